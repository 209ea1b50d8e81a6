//! `rampart`: the command line for teams, CI pipelines and operators. Commands arrive with their issues.

fn main() {
    eprintln!("rampart {}: no commands yet; see README.md", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
