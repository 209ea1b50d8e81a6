//! Runs an offline analysis document through the library and prints the report: a stand-in for the CLI's
//! `rampart analyze --input FILE` until that command is wired.
//!
//! `cargo run -p rampart-analysis --example analyze -- analysis/tests/data/analyze-input.json`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: analyze FILE.json")?;
    let text = std::fs::read_to_string(&path)?;
    println!("{}", rampart_analysis::analyze_json(&text)?);
    Ok(())
}
