use super::*;

/// An option as a case states it: (value, written from the manifest, editable).
type Stated = Option<(&'static str, bool, bool)>;
/// A new version's setting: (default, editable, overwriteOnUpdate).
type New = Option<(&'static str, bool, bool)>;

/// What a case expects for its one key.
#[derive(Debug, PartialEq)]
enum Want {
    Nothing,
    Delete,
    /// Replaced by the new setting's option.
    Replace,
    MarkEditable,
}

fn option(value: &str, from_manifest: bool, editable: bool) -> TenantOption {
    TenantOption {
        category: "cat".into(),
        key: "k".into(),
        value: value.into(),
        encrypted: false,
        editable,
        from_manifest,
    }
}

fn setting(default: &str, editable: bool, overwrite: bool) -> Setting {
    Setting {
        option: option(default, true, editable),
        overwrite_on_update: overwrite,
    }
}

fn key() -> (String, String) {
    ("cat".into(), "k".into())
}

#[test]
fn a_new_version_changes_only_what_berth_wrote_in_a_subscribers_tenant() {
    // (owner's tenant, option before, key in the previous version, new setting, change)
    let cases: &[(bool, Stated, bool, New, Want)] = &[
        // Removed from the manifest: a subscriber's own value stays, Berth's goes; the
        // owner's goes even when it wrote it.
        (
            false,
            Some(("mine", false, true)),
            true,
            None,
            Want::Nothing,
        ),
        (false, Some(("p", true, true)), true, None, Want::Delete),
        (true, Some(("mine", false, true)), true, None, Want::Delete),
        (true, Some(("p", true, false)), true, None, Want::Delete),
        // Removed, but the tenant holds no option there.
        (true, None, true, None, Want::Nothing),
        // Kept or new in the manifest: a subscriber's own value is never touched.
        (
            false,
            Some(("mine", false, true)),
            true,
            Some(("p2", false, true)),
            Want::Nothing,
        ),
        (
            false,
            Some(("mine", false, true)),
            false,
            Some(("p2", true, true)),
            Want::Nothing,
        ),
        (
            false,
            Some(("mine", false, true)),
            true,
            Some(("p2", true, false)),
            Want::Nothing,
        ),
        // The owner's own value: replaced when the setting is no longer editable or is
        // overwriteOnUpdate, kept (and editable) otherwise.
        (
            true,
            Some(("mine", false, true)),
            true,
            Some(("p2", false, true)),
            Want::Replace,
        ),
        (
            true,
            Some(("mine", false, false)),
            true,
            Some(("p2", true, false)),
            Want::MarkEditable,
        ),
        (
            true,
            Some(("mine", false, true)),
            true,
            Some(("p2", true, true)),
            Want::Replace,
        ),
        // What Berth wrote takes the new default, in any tenant.
        (
            false,
            Some(("p", true, true)),
            true,
            Some(("p2", true, false)),
            Want::Replace,
        ),
        (
            true,
            Some(("p", true, false)),
            true,
            Some(("p2", true, false)),
            Want::Replace,
        ),
        // A new key.
        (false, None, false, Some(("p2", false, true)), Want::Replace),
        (true, None, false, Some(("p2", true, false)), Want::Replace),
        // Neither version has the key: nothing to do, whoever wrote it.
        (
            false,
            Some(("mine", false, true)),
            false,
            None,
            Want::Nothing,
        ),
    ];
    for (i, (owner, before, previous, new, want)) in cases.iter().enumerate() {
        let existing: Vec<TenantOption> =
            before.iter().map(|(v, m, e)| option(v, *m, *e)).collect();
        let previous = if *previous { vec![key()] } else { Vec::new() };
        let settings: Vec<Setting> = new.iter().map(|(d, e, o)| setting(d, *e, *o)).collect();
        let got = changes(*owner, &previous, &settings, &existing);
        let expected = match want {
            Want::Nothing => vec![],
            Want::Delete => vec![OptionChange::Delete {
                category: "cat".into(),
                key: "k".into(),
            }],
            Want::Replace => vec![OptionChange::Replace(settings[0].option.clone())],
            Want::MarkEditable => vec![OptionChange::MarkEditable {
                category: "cat".into(),
                key: "k".into(),
            }],
        };
        assert_eq!(got, expected, "case {i}");
    }
}

#[test]
fn a_renamed_key_goes_and_the_new_one_comes_in_order() {
    let old = option("p", true, true);
    let mut renamed = setting("p2", true, false);
    renamed.option.key = "k2".into();
    let got = changes(false, &[key()], std::slice::from_ref(&renamed), &[old]);
    assert_eq!(
        got,
        vec![
            OptionChange::Delete {
                category: "cat".into(),
                key: "k".into()
            },
            OptionChange::Replace(renamed.option.clone()),
        ]
    );
}

#[test]
fn a_key_listed_twice_is_decided_against_the_first_decision() {
    // The second entry sees the option the first one wrote (Berth's now), so it replaces it
    // too rather than keeping the owner's old value.
    let first = setting("a", false, false);
    let second = setting("b", true, false);
    let got = changes(
        true,
        &[key(), key()],
        &[first.clone(), second.clone()],
        &[option("mine", false, true)],
    );
    assert_eq!(
        got,
        vec![
            OptionChange::Replace(first.option),
            OptionChange::Replace(second.option),
        ]
    );
}

#[test]
fn a_version_whose_settings_would_take_a_subscriber_past_a_cap_changes_nothing() {
    use crate::store::applications::get_any;
    use crate::store::options::tests::{fill, totals};
    use crate::store::options::{MAX_PER_TENANT, category};
    let mut conn = crate::store::test_conn(&["t1", "t2"]);
    let with = |app: &Application, settings: &str| {
        let text = format!(
            r#"{{"apiVersion":"2","name":"hello","version":"1.0.0","provider":{{"name":"x"}},"settingsCategory":"cat","settings":[{settings}]}}"#
        );
        Application {
            manifest: Some(serde_json::from_str(&text).unwrap()),
            ..app.clone()
        }
    };
    conn.execute_batch(
        "INSERT INTO applications (id, owner_tenant, name, key, type, creation_time) VALUES (7, 't1', 'hello', 'h', 'MICROSERVICE', 'now');
         INSERT INTO subscriptions VALUES (7, 't1', 'u', 's', 'now'), (7, 't2', 'u', 's', 'now');",
    )
    .unwrap();
    let app = get_any(&conn, 7).unwrap();
    let v1 = with(&app, r#"{"key":"a","defaultValue":"1"}"#);
    for tenant in ["t1", "t2"] {
        let seeded = TenantOption {
            category: "cat".into(),
            key: "a".into(),
            value: "1".into(),
            encrypted: false,
            editable: false,
            from_manifest: true,
        };
        options::put(&conn, tenant, &seeded).unwrap();
    }
    // t2 has one place left.
    fill(&conn, "t2", MAX_PER_TENANT - 1, 1 << 20);
    let no_seal =
        |_: &str, _: &str, _: &str, v: &str| -> Result<String, StoreError> { Ok(v.to_owned()) };
    let two_more = with(
        &app,
        r#"{"key":"a","defaultValue":"2"},{"key":"b","defaultValue":"2"},{"key":"c","defaultValue":"2"}"#,
    );
    // (case, the new version's settings, accepted)
    let cases = [
        (
            "one key more",
            with(
                &app,
                r#"{"key":"a","defaultValue":"2"},{"key":"b","defaultValue":"2"}"#,
            ),
            true,
        ),
        ("two keys more", two_more.clone(), false),
        (
            "two renamed keys",
            with(
                &app,
                r#"{"key":"x","defaultValue":"2"},{"key":"y","defaultValue":"2"}"#,
            ),
            true,
        ),
    ];
    for (case, after, accepted) in cases {
        let tx = conn.transaction().unwrap();
        match follow(&tx, &v1, &after, &no_seal) {
            Ok(()) => assert!(accepted, "{case}: accepted"),
            Err(StoreError::Invalid(m)) => {
                assert!(!accepted, "{case}: refused: {m}");
                assert!(
                    m.contains("Tenant t2, subscribed to hello") && m.contains("10000 options"),
                    "{case}: {m}"
                );
                // Checked before anything is written, in any tenant.
                for tenant in ["t1", "t2"] {
                    let kept: Vec<String> = category(&tx, tenant, "cat")
                        .unwrap()
                        .into_iter()
                        .map(|o| format!("{}={}", o.key, o.value))
                        .collect();
                    assert_eq!(kept, ["a=1"], "{case}: {tenant}");
                }
            }
            Err(other) => panic!("{case}: {other:?}"),
        }
    }
    // A rollback restores a version's settings whatever the caps.
    let tx = conn.transaction().unwrap();
    follow_back(&tx, &v1, &two_more, &no_seal).unwrap();
    assert_eq!(totals(&tx, "t2").0, MAX_PER_TENANT + 1);
}
