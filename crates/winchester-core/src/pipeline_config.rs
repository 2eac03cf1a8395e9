//! Pipeline definitions (`pipelines.yaml`): pipeline name -> ordered handlers.

use crate::config_error::{show, ConfigError, ConfigErrors};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One handler entry of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerEntry {
    /// Handler name, resolved through `pipeline_handlers`.
    pub name: String,
    /// Parameters given to the handler's constructor (a YAML map).
    pub params: serde_yaml::Mapping,
}

/// All pipelines, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineConfig {
    /// Pipeline name -> handlers in order.
    pub pipelines: BTreeMap<String, Vec<HandlerEntry>>,
}

impl PipelineConfig {
    /// Parses a `pipelines.yaml` document: a map of pipeline name to a list whose
    /// entries are a handler name or `{name: .., params: {..}}`.
    pub fn from_yaml_str(text: &str, file: &Path) -> Result<PipelineConfig, ConfigErrors> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::yaml(file, &e))?;
        let map = match doc {
            Value::Mapping(m) => m,
            Value::Null => Default::default(),
            other => {
                return Err(ConfigError::new(format!(
                    "must be a map of pipeline name to handler list, found {}",
                    show(&other)
                ))
                .in_file(file)
                .into())
            }
        };
        let mut errors = Vec::new();
        let mut pipelines = BTreeMap::new();
        for (k, v) in &map {
            let Some(name) = k.as_str() else {
                errors
                    .push(ConfigError::new(format!("pipeline names must be strings, found {}", show(k))).in_file(file));
                continue;
            };
            let ctx = format!("pipeline {name:?}");
            let Value::Sequence(items) = v else {
                errors.push(
                    ConfigError::new(format!("must be a list of handlers, found {}", show(v)))
                        .in_file(file)
                        .context(ctx),
                );
                continue;
            };
            let mut handlers = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let key = format!("[{i}]");
                match it {
                    Value::String(s) => handlers.push(HandlerEntry { name: s.clone(), params: Default::default() }),
                    Value::Mapping(m) => {
                        for mk in m.keys() {
                            if !matches!(mk.as_str(), Some("name") | Some("params")) {
                                errors.push(
                                    ConfigError::new(format!(
                                        "unknown key {}; a handler entry has name and params",
                                        show(mk)
                                    ))
                                    .in_file(file)
                                    .context(ctx.clone())
                                    .key(key.clone()),
                                );
                            }
                        }
                        let name = match m.get("name") {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => {
                                errors.push(
                                    ConfigError::new(format!("handler name must be a string, found {}", show(other)))
                                        .in_file(file)
                                        .context(ctx.clone())
                                        .key(format!("{key}.name")),
                                );
                                continue;
                            }
                            None => {
                                errors.push(
                                    ConfigError::new("handler entry has no name")
                                        .in_file(file)
                                        .context(ctx.clone())
                                        .key(format!("{key}.name")),
                                );
                                continue;
                            }
                        };
                        let params = match m.get("params") {
                            None | Some(Value::Null) => Default::default(),
                            Some(Value::Mapping(p)) => p.clone(),
                            Some(other) => {
                                errors.push(
                                    ConfigError::new(format!("params must be a map, found {}", show(other)))
                                        .in_file(file)
                                        .context(ctx.clone())
                                        .key(format!("{key}.params")),
                                );
                                continue;
                            }
                        };
                        handlers.push(HandlerEntry { name, params });
                    }
                    other => errors.push(
                        ConfigError::new(format!(
                            "a handler entry is a name or a {{name, params}} map, found {}",
                            show(other)
                        ))
                        .in_file(file)
                        .context(ctx.clone())
                        .key(key),
                    ),
                }
            }
            pipelines.insert(name.to_string(), handlers);
        }
        if errors.is_empty() {
            Ok(PipelineConfig { pipelines })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Loads a `pipelines.yaml` file.
    pub fn load(file: &Path) -> Result<PipelineConfig, ConfigErrors> {
        let text =
            std::fs::read_to_string(file).map_err(|e| ConfigError::new(format!("cannot read: {e}")).in_file(file))?;
        PipelineConfig::from_yaml_str(&text, file)
    }

    /// The handlers of a pipeline.
    pub fn get(&self, name: &str) -> Option<&[HandlerEntry]> {
        self.pipelines.get(name).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let p = PipelineConfig::from_yaml_str(
            "p:\n  - logger\n  - name: webhook\n    params: {url: 'http://x'}\n  - {name: logger}\n",
            Path::new("p.yaml"),
        )
        .unwrap();
        let h = p.get("p").unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].name, "logger");
        assert!(h[0].params.is_empty() && h[2].params.is_empty());
        assert_eq!(h[1].params.get("url").and_then(|v| v.as_str()), Some("http://x"));
        let e = PipelineConfig::from_yaml_str("p:\n  - {params: {}}\n", Path::new("p.yaml")).unwrap_err();
        assert!(e.to_string().contains("pipeline \"p\"") && e.to_string().contains("no name"), "{e}");
    }
}
