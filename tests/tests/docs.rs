//! docs/architecture.md stays true: every repository path it names in code
//! spans (`core/src/oci/`, `engine/src/flash/card.rs`, …) and every page it
//! links exists. Move the page with the code.

use std::path::Path;

const TOP: [&str; 9] = [
    "core/",
    "engine/",
    "flasher/",
    "builder/",
    "gui/",
    "tests/",
    "bench/",
    "scripts/",
    "inventory/",
];

#[test]
fn architecture_page_names_only_paths_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let page = root.join("docs/architecture.md");
    let text = std::fs::read_to_string(&page).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // Code spans: the odd pieces between backticks.
        for span in line.split('`').skip(1).step_by(2) {
            if TOP.iter().any(|t| span.starts_with(t))
                && span
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
            {
                named += 1;
                if !root.join(span).exists() {
                    missing.push(format!("docs/architecture.md:{}: `{span}`", n + 1));
                }
            }
        }
        // Links to other pages: ](page.md) or ](page.md#anchor).
        for link in line.split("](").skip(1) {
            let target = link.split([')', '#']).next().unwrap_or("");
            if target.ends_with(".md")
                && !target.contains("://")
                && !root.join("docs").join(target).exists()
            {
                missing.push(format!("docs/architecture.md:{}: link {target}", n + 1));
            }
        }
    }
    assert!(
        named >= 30,
        "only {named} paths found: did the page's format change?"
    );
    assert!(
        missing.is_empty(),
        "the architecture page names what no longer exists (update the page):\n{}",
        missing.join("\n")
    );
}
