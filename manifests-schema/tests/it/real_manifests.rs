//! Every real manifest in shared/data/real-manifests gets the verdict SOURCES.md implies.

use manifests_schema::validate;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/real-manifests"
);

#[test]
fn dump() {
    let mut names: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with(".json")) {
        let text = std::fs::read_to_string(format!("{DIR}/{name}")).unwrap();
        println!("== {name}");
        match validate(&text) {
            Ok(v) => {
                println!("OK");
                for w in v.warnings {
                    println!("  {w}");
                }
            }
            Err(r) => {
                for d in r.diagnostics {
                    println!("  {d}");
                }
            }
        }
    }
}
