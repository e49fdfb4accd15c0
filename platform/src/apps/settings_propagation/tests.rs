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
