//! The protocol cases in `tests/testdata/scenarios/*.txt`, each run through
//! the simulator (`regionsync_sim::script`); `REWRITE=1` writes what
//! happened back as the expectation.

use regionsync_sim::Policies;
use regionsync_sim::script::run_file;

#[test]
fn every_scenario_file_happens_as_written() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/scenarios");
    let rewrite = std::env::var_os("REWRITE").is_some();
    let policies = Policies::load().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "scenario files are missing from {}",
        dir.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run_file(f, &policies, rewrite).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
