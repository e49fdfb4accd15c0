//! Line/column of diagnostics, their order, and the Display format.

use manifests_schema::validate;

#[test]
fn diagnostics_point_at_values_in_source_order() {
    let text = "{\n\t\"apiVersion\": \"1\",\n  \"version\": \"1.0\",\n  \"provider\": {\"name\": \"Acme\"},\n  \"replicas\": 9,\n  \"settings\": [\n    {\"key\": \"k\"}\n  ],\n  \"résumé\": {\"x\": 1}, \"resources\": {\"cpu\": \"1m\"}\n}";
    let diagnostics = validate(text).unwrap_err().diagnostics;
    let positions: Vec<(&str, usize, usize)> = diagnostics
        .iter()
        .map(|d| (d.pointer.as_str(), d.line, d.column))
        .collect();
    assert_eq!(
        positions,
        [
            ("/apiVersion", 2, 16),
            ("/version", 3, 14),
            ("/replicas", 5, 15),
            // Missing property: the enclosing object.
            ("/settings/0", 7, 5),
            // Columns count characters: "résumé" has two 2-byte characters.
            ("/résumé", 9, 13),
            ("/resources/cpu", 9, 44),
        ]
    );
}

#[test]
fn syntax_errors_carry_serde_json_position() {
    let cases = [
        ("{\n  \"a\": 1\n  \"b\": 2\n}", (3, 3)),
        ("{\"é\": tru}", (1, 10)),
        ("{\n  \"a\": [1, 2,]\n}", (2, 14)),
    ];
    for (text, (line, column)) in cases {
        let diagnostics = validate(text).unwrap_err().diagnostics;
        assert_eq!(diagnostics.len(), 1, "{text}");
        assert_eq!(
            (diagnostics[0].line, diagnostics[0].column),
            (line, column),
            "{text}: {}",
            diagnostics[0]
        );
    }
}

#[test]
fn display_format() {
    let text = "{\n  \"apiVersion\": \"2\",\n  \"version\": \"1.0.0\",\n  \"provider\": {\"name\": \"Acme\"},\n  \"replicas\": 7\n}";
    let rejected = validate(text).unwrap_err();
    assert_eq!(
        rejected.diagnostics[0].to_string(),
        "error at 5:15 /replicas: `replicas` must be between 1 and 5, got 7"
    );
    assert_eq!(
        rejected.to_string(),
        "invalid manifest: error at 5:15 /replicas: `replicas` must be between 1 and 5, got 7"
    );
    let syntax = validate("{").unwrap_err();
    assert_eq!(
        syntax.diagnostics[0].to_string(),
        "error at 1:1 (document): the manifest is not valid JSON: EOF while parsing an object; the file ends too early: close every `{`, `[` and `\"`"
    );
}
