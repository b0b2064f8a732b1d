//! sipscreen's E.164 normalization held against Google's libphonenumber on a multi-country
//! corpus (`tests/fixtures/e164_corpus.tsv`, made by `tools/gen_e164_corpus.py`).

use sipscreen::policy::number::{normalize, Region};

#[test]
fn normalization_agrees_with_libphonenumber() {
    let text = include_str!("fixtures/e164_corpus.tsv");
    let mut total = 0;
    let mut regions = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [region, dialed, expected, kind] = cols[..] else {
            panic!("bad fixture line {line:?}")
        };
        let r: Region = region
            .parse()
            .unwrap_or_else(|_| panic!("unknown region {region}"));
        let got = normalize(dialed, r, "").e164;
        total += 1;
        regions.insert(region);
        if got.as_deref() != Some(expected) {
            wrong.push(format!(
                "{region} {dialed} ({kind}): expected {expected}, got {got:?}"
            ));
        }
    }
    assert!(
        total >= 500 && regions.len() >= 30,
        "corpus too small: {total} cases, {} regions",
        regions.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {total} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
