//! docs/architecture.md's crate map and arrows stay true: its "Crate
//! dependencies" table must list exactly the workspace's crates, each with
//! exactly the workspace crates it depends on (normal dependencies, optional
//! ones included; dev-dependencies are not arrows), as `cargo metadata` sees
//! them; and its crate map (the first fenced block) names every crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Each workspace crate and the workspace crates among its normal dependencies.
fn from_cargo_metadata() -> Graph {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let members: BTreeSet<&str> =
        meta["workspace_members"].as_array().expect("workspace_members").iter().filter_map(|m| m.as_str()).collect();
    let packages: Vec<&serde_json::Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
        .collect();
    let names: BTreeSet<String> = packages.iter().filter_map(|p| p["name"].as_str()).map(String::from).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                // `kind` is null for normal dependencies, "dev" or "build" otherwise.
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| names.contains(*n))
                .map(String::from)
                .collect();
            (p["name"].as_str().expect("package name").to_string(), deps)
        })
        .collect()
}

fn architecture_md() -> String {
    std::fs::read_to_string(root().join("docs/architecture.md")).expect("read docs/architecture.md")
}

/// The crate names in backticks of one table cell (`none` gives none).
fn crates_in(cell: &str) -> BTreeSet<String> {
    cell.split('`').skip(1).step_by(2).filter(|t| t.starts_with("winchester")).map(String::from).collect()
}

/// The "Crate dependencies" table of docs/architecture.md.
fn from_doc(doc: &str) -> Graph {
    let section = doc
        .split("\n## Crate dependencies\n")
        .nth(1)
        .expect("docs/architecture.md has a \"## Crate dependencies\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut graph = Graph::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 2, "a row of the crate table has two cells: {line}");
        let name = crates_in(cells[0]).into_iter().next().unwrap_or_else(|| panic!("no crate name in: {line}"));
        let previous = graph.insert(name.clone(), crates_in(cells[1]));
        assert!(previous.is_none(), "docs/architecture.md lists crate {name} twice");
    }
    assert!(!graph.is_empty(), "the crate table of docs/architecture.md has no rows");
    graph
}

/// The crates named at the start of a line of the crate map (the first fenced block).
fn crate_map(doc: &str) -> BTreeSet<String> {
    let block = doc.split("```").nth(1).expect("docs/architecture.md opens with a fenced crate map");
    block
        .lines()
        // A crate's own line starts with two spaces; its continuation lines with more.
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("winchester"))
        .map(String::from)
        .collect()
}

#[test]
fn architecture_md_crate_table_matches_cargo_metadata() {
    let actual = from_cargo_metadata();
    let documented = from_doc(&architecture_md());
    let mut problems = Vec::new();
    for (name, deps) in &actual {
        match documented.get(name) {
            None => problems.push(format!("crate {name} is missing from docs/architecture.md's crate table")),
            Some(allowed) => {
                for d in deps.difference(allowed) {
                    problems.push(format!("{name} depends on {d}, which docs/architecture.md does not allow"));
                }
                for d in allowed.difference(deps).filter(|d| actual.contains_key(*d)) {
                    problems.push(format!("docs/architecture.md lets {name} depend on {d}, but it does not"));
                }
            }
        }
    }
    for name in documented.keys().filter(|n| !actual.contains_key(*n)) {
        problems.push(format!("docs/architecture.md lists crate {name}, which is not in the workspace"));
    }
    for (name, deps) in &documented {
        for d in deps.iter().filter(|d| !actual.contains_key(*d)) {
            problems.push(format!("docs/architecture.md lets {name} depend on {d}, which is not in the workspace"));
        }
    }
    assert!(problems.is_empty(), "docs/architecture.md is out of date:\n{}", problems.join("\n"));
}

#[test]
fn architecture_md_crate_map_names_every_crate() {
    let actual: BTreeSet<String> = from_cargo_metadata().into_keys().collect();
    let map = crate_map(&architecture_md());
    let missing: Vec<_> = actual.difference(&map).collect();
    let gone: Vec<_> = map.difference(&actual).collect();
    assert!(missing.is_empty(), "docs/architecture.md's crate map does not name {missing:?}");
    assert!(gone.is_empty(), "docs/architecture.md's crate map names {gone:?}, not in the workspace");
}

#[test]
fn crate_table_parser_reads_rows_and_none() {
    let doc = "x\n## Crate dependencies\n\ntext `winchester-x`\n\n| crate | may depend on |\n|---|---|\n| `winchester-core` | none |\n| `winchester` | `winchester-core`, `winchester-storage` (optional: the python feature) |\n\n## Next\n| `winchester-z` | none |\n";
    let g = from_doc(doc);
    assert_eq!(g.len(), 2);
    assert!(g["winchester-core"].is_empty());
    assert_eq!(g["winchester"], ["winchester-core", "winchester-storage"].iter().map(|s| s.to_string()).collect());
}
