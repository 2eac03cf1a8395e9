//! Trigger authoring: `winchester test` runs fixture files of sample events
//! against the configured triggers and pipelines ([`fixture`]), `winchester
//! explain` says what each trigger makes of one event ([`explain`]).

pub mod explain;
pub mod fixture;
