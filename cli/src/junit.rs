//! JUnit XML for `rampart validate --format junit`: one test case for the contract comparison and one per batch size
//! of the residual-shape check, so CI systems show each as passed or failed.

use rampart_checks::contract::ContractReport;

/// The report as a JUnit `<testsuites>` document.
pub fn contract_report(report: &ContractReport, candidate: &str, baseline: &str) -> String {
    let mut cases = Vec::new();
    let breaking: Vec<&str> = report.differences.iter().filter(|d| d.breaking).map(|d| d.message.as_str()).collect();
    let notes: Vec<&str> = report.differences.iter().filter(|d| !d.breaking).map(|d| d.message.as_str()).collect();
    cases.push(TestCase {
        name: format!("tensor contract matches baseline {baseline}"),
        failure: (!breaking.is_empty())
            .then(|| (format!("{} breaking difference(s)", breaking.len()), breaking.join("\n"))),
        output: notes.join("\n"),
    });
    for check in &report.residual_checks {
        let findings: Vec<String> = check.findings.iter().map(|finding| finding.describe()).collect();
        cases.push(TestCase {
            name: format!("residual shapes fit at batch size {}", check.batch_size),
            failure: (!check.passed).then(|| (format!("{} node(s) do not fit", findings.len()), findings.join("\n"))),
            output: check.notes.join("\n"),
        });
    }
    let failures = cases.iter().filter(|case| case.failure.is_some()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"rampart validate\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
        cases.len()
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n",
        escape(&format!("contract {candidate}")),
        cases.len()
    ));
    for case in &cases {
        xml.push_str(&format!("    <testcase classname=\"rampart.validate\" name=\"{}\"", escape(&case.name)));
        if case.failure.is_none() && case.output.is_empty() {
            xml.push_str("/>\n");
            continue;
        }
        xml.push_str(">\n");
        if let Some((message, body)) = &case.failure {
            xml.push_str(&format!(
                "      <failure message=\"{}\" type=\"incompatible\">{}</failure>\n",
                escape(message),
                escape(body)
            ));
        }
        if !case.output.is_empty() {
            xml.push_str(&format!("      <system-out>{}</system-out>\n", escape(&case.output)));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

struct TestCase {
    name: String,
    /// (message, details) when the case failed.
    failure: Option<(String, String)>,
    output: String,
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 cannot carry.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
