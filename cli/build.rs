//! Build script of the CLI: vendors Chart.js for `rampart dashboard` into OUT_DIR with `web/vendor-chartjs` (the
//! pinned npm release, integrity-checked), so the binary embeds it and fetches nothing at run time. Without npm or
//! the registry the build still succeeds: the dashboard then says that charts are missing instead of drawing them.
//! `RAMPART_CHARTJS_DIR` points at an already vendored copy (offline builds).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=web/vendor-chartjs");
    println!("cargo:rerun-if-env-changed=RAMPART_CHARTJS_DIR");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out.join("chart.umd.min.js");
    if let Some(dir) = std::env::var_os("RAMPART_CHARTJS_DIR") {
        let source = PathBuf::from(dir).join("chart.umd.min.js");
        println!("cargo:rerun-if-changed={}", source.display());
        if std::fs::copy(&source, &target).is_ok() {
            return;
        }
        println!("cargo:warning=RAMPART_CHARTJS_DIR has no readable chart.umd.min.js; vendoring from npm instead");
    }
    let vendored = Command::new("bash").arg("web/vendor-chartjs").arg(&out).status();
    match vendored {
        Ok(status) if status.success() && target.is_file() => {}
        other => {
            println!(
                "cargo:warning=could not vendor Chart.js ({other:?}); the dashboard will show its numbers without \
                 charts. Install npm (scripts/ci-deps does) and rebuild."
            );
            let placeholder = "window.RAMPART_CHARTS_MISSING = 'this rampart binary was built without Chart.js \
                               (npm was not available at build time); rebuild with npm installed';\n";
            std::fs::write(&target, placeholder).expect("OUT_DIR is writable");
        }
    }
}
