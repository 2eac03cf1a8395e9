//! Handler type name -> constructor.

use super::{handlers, Handler, HandlerConfigError, HandlerContext};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Builds a handler from its YAML `params`, with the resources the handlers
/// of its worker share; an `Err` names what is wrong with the params.
pub type HandlerFactory =
    Arc<dyn Fn(&serde_yaml::Mapping, &HandlerContext) -> Result<Box<dyn Handler>, HandlerConfigError> + Send + Sync>;

/// Resolves a class path (`module.path:ClassName`) that is neither built in
/// nor registered to a handler factory (e.g. a Python class); an `Err` says why
/// the class cannot be loaded.
pub type ClassLoader = Arc<dyn Fn(&str) -> Result<HandlerFactory, HandlerConfigError> + Send + Sync>;

/// Known handler types. `pipeline_handlers` in `winchester.yaml` maps each
/// handler name used in `pipelines.yaml` to one of these type names (or to an
/// original Python class path, which maps to the equivalent built-in, or, with
/// a [`ClassLoader`], to any class).
#[derive(Clone)]
pub struct HandlerRegistry {
    types: BTreeMap<String, HandlerFactory>,
    /// Types whose handlers never add events (see [`HandlerRegistry::never_adds_events`]).
    adding_none: BTreeSet<String>,
    class_loader: Option<ClassLoader>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerRegistry")
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .field("class_loader", &self.class_loader.is_some())
            .finish()
    }
}

/// Whether a handler type is written as a class path (`module.path:ClassName`).
pub fn is_class_path(type_name: &str) -> bool {
    match type_name.split_once(':') {
        Some((module, class)) => !module.is_empty() && !class.is_empty() && !class.contains(':'),
        None => false,
    }
}

/// The original's class paths and the built-in each maps to.
const PYTHON_ALIASES: &[(&str, &str)] = &[
    ("winchester.pipeline_handler:LoggingHandler", "logger"),
    ("winchester.pipeline_handler:UsageHandler", "usage"),
    ("winchester.pipeline_handler:NotabeneHandler", "amqp"),
    ("winchester.pipeline_handler:AtomPubHandler", "webhook"),
];

impl Default for HandlerRegistry {
    fn default() -> Self {
        HandlerRegistry::with_builtins()
    }
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn empty() -> HandlerRegistry {
        HandlerRegistry { types: BTreeMap::new(), adding_none: BTreeSet::new(), class_loader: None }
    }

    /// The built-in handler types.
    pub fn with_builtins() -> HandlerRegistry {
        let mut r = HandlerRegistry::empty();
        handlers::register_builtins(&mut r);
        r
    }

    /// Registers (or replaces) a handler type.
    pub fn register<F>(&mut self, type_name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&serde_yaml::Mapping, &HandlerContext) -> Result<Box<dyn Handler>, HandlerConfigError>
            + Send
            + Sync
            + 'static,
    {
        let type_name = type_name.into();
        self.adding_none.remove(&type_name);
        self.types.insert(type_name, Arc::new(factory));
        self
    }

    /// Registers (or replaces) a handler type whose handlers never add events:
    /// they return the events they get, or fewer. A replay may then commit
    /// its next batch while such pipelines run (see `winchester::replay`).
    pub fn register_never_adding<F>(&mut self, type_name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&serde_yaml::Mapping, &HandlerContext) -> Result<Box<dyn Handler>, HandlerConfigError>
            + Send
            + Sync
            + 'static,
    {
        let type_name = type_name.into();
        self.register(type_name.clone(), factory);
        self.adding_none.insert(type_name);
        self
    }

    /// Whether handlers of `type_name` are known never to add events (false
    /// for unknown types and class paths).
    pub fn never_adds_events(&self, type_name: &str) -> bool {
        self.adding_none.contains(self.canonical(type_name))
    }

    /// The canonical type name: original class paths map to built-ins.
    pub fn canonical<'a>(&self, type_name: &'a str) -> &'a str {
        PYTHON_ALIASES.iter().find(|(p, _)| *p == type_name).map(|(_, b)| *b).unwrap_or(type_name)
    }

    /// Sets the loader of class paths that are neither built in nor registered.
    pub fn set_class_loader(&mut self, loader: ClassLoader) -> &mut Self {
        self.class_loader = Some(loader);
        self
    }

    /// Whether a type (or class path) is known; with a class loader every class
    /// path is (whether it loads is found when it is built).
    pub fn knows(&self, type_name: &str) -> bool {
        self.types.contains_key(self.canonical(type_name)) || (self.class_loader.is_some() && is_class_path(type_name))
    }

    /// Registered type names.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Builds a handler of `type_name` from `params`, sharing `context`'s resources.
    pub fn build(
        &self,
        type_name: &str,
        params: &serde_yaml::Mapping,
        context: &HandlerContext,
    ) -> Result<Box<dyn Handler>, HandlerConfigError> {
        if let Some(f) = self.types.get(self.canonical(type_name)) {
            return f(params, context);
        }
        match &self.class_loader {
            Some(load) if is_class_path(type_name) => load(type_name)?(params, context),
            _ => Err(HandlerConfigError::UnknownType(type_name.to_string())),
        }
    }
}
