//! Pipeline definitions (`pipelines.yaml`): pipeline name -> ordered handlers.

use crate::config_error::{present_raw, show, ConfigError, ConfigErrors, Raw};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
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

/// One pipeline as written: a list of handler entries.
type RawPipeline = Raw<Vec<Raw<RawHandler>>>;

/// A handler entry as written: a name, or a `{name, params}` map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHandler {
    Name(String),
    Entry(Box<RawEntry>),
}

/// A `{name, params}` handler entry; any other key lands in `unknown`.
#[derive(Debug, Deserialize)]
struct RawEntry {
    #[serde(default, deserialize_with = "present_raw")]
    name: Option<Raw<String>>,
    #[serde(default)]
    params: Option<Raw<Mapping>>,
    #[serde(flatten)]
    unknown: Mapping,
}

/// All pipelines, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineConfig {
    /// Pipeline name -> handlers in order.
    pub pipelines: BTreeMap<String, Vec<HandlerEntry>>,
}

impl PipelineConfig {
    /// Parses a `pipelines.yaml` document: a map of pipeline name to a list whose
    /// entries are a handler name or `{name: .., params: {..}}`. Each pipeline is
    /// read into [`RawPipeline`] (serde), then validated; every error is returned.
    pub fn from_yaml_str(text: &str, file: &Path) -> Result<PipelineConfig, ConfigErrors> {
        PipelineConfig::from_yaml_str_warned(text, file).map(|(p, _)| p)
    }

    /// [`from_yaml_str`](Self::from_yaml_str) with the YAML's warnings
    /// (duplicate keys, see [`crate::yaml`]).
    pub fn from_yaml_str_warned(text: &str, file: &Path) -> Result<(PipelineConfig, Vec<ConfigError>), ConfigErrors> {
        let (doc, warnings) = crate::yaml::load(text, file)?;
        PipelineConfig::from_value(doc, file).map(|p| (p, warnings))
    }

    /// The pipelines of a parsed document; `file` names it in errors.
    pub fn from_value(doc: Value, file: &Path) -> Result<PipelineConfig, ConfigErrors> {
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
        for (k, v) in map {
            let Some(name) = k.as_str() else {
                errors.push(
                    ConfigError::new(format!("pipeline names must be strings, found {}", show(&k))).in_file(file),
                );
                continue;
            };
            let ctx = format!("pipeline {name:?}");
            let err = |msg: String, key: Option<String>| {
                let e = ConfigError::new(msg).in_file(file).context(ctx.clone());
                match key {
                    Some(k) => e.key(k),
                    None => e,
                }
            };
            let items = match RawPipeline::deserialize(v)
                .map_err(|e| e.to_string())
                .and_then(|r| r.expect("must be a list of handlers", |_| true).map_err(|e| e.message))
            {
                Ok(items) => items,
                Err(msg) => {
                    errors.push(err(msg, None));
                    continue;
                }
            };
            let mut handlers = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let key = format!("[{i}]");
                match item.expect("a handler entry is a name or a {name, params} map", |_| true) {
                    Err(e) => errors.push(err(e.message, Some(key))),
                    Ok(RawHandler::Name(name)) => handlers.push(HandlerEntry { name, params: Default::default() }),
                    Ok(RawHandler::Entry(entry)) => {
                        let RawEntry { name, params, unknown } = *entry;
                        for mk in unknown.keys() {
                            errors.push(err(
                                format!("unknown key {}; a handler entry has name and params", show(mk)),
                                Some(key.clone()),
                            ));
                        }
                        let name = match name.map(|n| n.expect("handler name must be a string", |_| true)) {
                            Some(Ok(name)) => name,
                            Some(Err(e)) => {
                                errors.push(err(e.message, Some(format!("{key}.name"))));
                                continue;
                            }
                            None => {
                                errors.push(err("handler entry has no name".into(), Some(format!("{key}.name"))));
                                continue;
                            }
                        };
                        let params = match params.map(|p| p.expect("params must be a map", |_| true)) {
                            None => Default::default(),
                            Some(Ok(params)) => params,
                            Some(Err(e)) => {
                                errors.push(err(e.message, Some(format!("{key}.params"))));
                                continue;
                            }
                        };
                        handlers.push(HandlerEntry { name, params });
                    }
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

    /// [`load`](Self::load) with the YAML's warnings.
    pub fn load_warned(file: &Path) -> Result<(PipelineConfig, Vec<ConfigError>), ConfigErrors> {
        let text =
            std::fs::read_to_string(file).map_err(|e| ConfigError::new(format!("cannot read: {e}")).in_file(file))?;
        PipelineConfig::from_yaml_str_warned(&text, file)
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

    /// Every problem of every pipeline, each with file, pipeline and entry.
    #[test]
    fn every_error_names_file_pipeline_and_entry() {
        let e = PipelineConfig::from_yaml_str(
            "p:\n  - logger\n  - {name: 5}\n  - {name: ~}\n  - {name: x, params: [1], extra: 2}\n  - 7\n  - ~\n\
             q: logger\n1: [logger]\nr: []\n",
            Path::new("/etc/w/pipelines.yaml"),
        )
        .unwrap_err();
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "/etc/w/pipelines.yaml: pipeline \"p\": key \"[1].name\": handler name must be a string, found 5",
                "/etc/w/pipelines.yaml: pipeline \"p\": key \"[2].name\": handler name must be a string, found null",
                "/etc/w/pipelines.yaml: pipeline \"p\": key \"[3]\": unknown key \"extra\"; a handler entry has name and params",
                "/etc/w/pipelines.yaml: pipeline \"p\": key \"[3].params\": params must be a map, found - 1",
                "/etc/w/pipelines.yaml: pipeline \"p\": key \"[4]\": a handler entry is a name or a {name, params} map, found 7",
                "/etc/w/pipelines.yaml: pipeline \"p\": key \"[5]\": a handler entry is a name or a {name, params} map, found null",
                "/etc/w/pipelines.yaml: pipeline \"q\": must be a list of handlers, found \"logger\"",
                "/etc/w/pipelines.yaml: pipeline names must be strings, found 1",
            ]
        );
        let e = PipelineConfig::from_yaml_str("- p\n", Path::new("p.yaml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 configuration error\n  - p.yaml: must be a map of pipeline name to handler list, found - p"
        );
        let e = PipelineConfig::from_yaml_str("p: [\n", Path::new("p.yaml")).unwrap_err();
        assert!(e.0[0].line.is_some() && e.to_string().contains("invalid YAML"), "{e}");
        let ok = PipelineConfig::from_yaml_str("r: []\ns: [{name: logger, params: ~}]\n", Path::new("p.yaml")).unwrap();
        assert!(ok.get("r").unwrap().is_empty() && ok.get("s").unwrap()[0].params.is_empty());
    }
}
