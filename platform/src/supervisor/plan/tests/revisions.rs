//! Old revisions: which one keeps running beside a rollout, for how long, and what retires.

use super::*;

fn old(id: &str, running: bool, revision: &str, version: &str) -> Old {
    Old {
        id: id.to_owned(),
        running,
        revision: Some(revision.to_owned()),
        version: Some(version.to_owned()),
    }
}

fn retain(id: &str) -> Action {
    Action::Retain { id: id.to_owned() }
}

fn retired(id: &str) -> Action {
    remove(id, Removal::Retired)
}

#[test]
fn only_the_last_ready_revision_is_kept_and_only_for_the_deadline() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let deadline = s(60);
    let beside = |stable_revision, active, stable_version, kept_since, now| Beside {
        current: "C",
        stable_revision,
        active_version: active,
        stable_version,
        kept_since,
        deadline,
        now,
    };
    let kept_ = |revision: &str, since, expired| {
        Some(Kept {
            revision: revision.to_owned(),
            since,
            expired,
        })
    };
    // Revision A was ready (1.0); B, a later change of 1.0 (a runtime option, a re-upload),
    // never was; C is current.
    let pile = || {
        vec![
            old("a1", true, "A", "1.0"),
            old("a2", true, "A", "1.0"),
            old("b1", true, "B", "1.0"),
        ]
    };
    // (case, beside, old, expected)
    let cases = [
        (
            "the last ready revision, not every one of the stable version",
            beside(Some("A"), "1.0", Some("1.0"), None, t0),
            pile(),
            kept_("A", t0, false),
        ),
        (
            "its time counts from the pass that first kept it",
            beside(Some("A"), "1.0", Some("1.0"), Some(("A", t0)), t0 + s(59)),
            pile(),
            kept_("A", t0, false),
        ),
        (
            "a revision change within one version: over at the deadline",
            beside(Some("A"), "1.0", Some("1.0"), Some(("A", t0)), t0 + s(60)),
            pile(),
            kept_("A", t0, true),
        ),
        (
            "the count is another revision's: it starts now",
            beside(Some("A"), "1.0", Some("1.0"), Some(("B", t0)), t0 + s(90)),
            pile(),
            kept_("A", t0 + s(90), false),
        ),
        (
            "a version rollout: its rollback bounds the stable version, not this",
            beside(Some("A"), "2.0", Some("1.0"), Some(("A", t0)), t0 + s(600)),
            pile(),
            kept_("A", t0, false),
        ),
        (
            "a version that is not the stable one (rolled back from): over at the deadline",
            beside(Some("A"), "0.9", Some("0.9"), Some(("A", t0)), t0 + s(60)),
            pile(),
            kept_("A", t0, true),
        ),
        (
            "the current revision is the last ready one: nothing kept",
            beside(Some("C"), "1.0", Some("1.0"), None, t0),
            pile(),
            None,
        ),
        (
            "nothing of the last ready revision runs: nothing kept",
            beside(Some("A"), "1.0", Some("1.0"), None, t0),
            vec![old("a1", false, "A", "1.0"), old("b1", true, "B", "1.0")],
            None,
        ),
        (
            "after a restart: the stable version's revision with most running instances",
            beside(None, "1.0", Some("1.0"), None, t0),
            pile(),
            kept_("A", t0, false),
        ),
        (
            "after a restart, of equals the lowest name",
            beside(None, "1.0", Some("1.0"), None, t0),
            vec![old("b1", true, "B", "1.0"), old("a1", true, "A", "1.0")],
            kept_("A", t0, false),
        ),
        (
            "after a restart, stopped instances and other versions do not count",
            beside(None, "2.0", Some("1.0"), None, t0),
            vec![
                old("a1", false, "A", "1.0"),
                old("a2", false, "A", "1.0"),
                old("b1", true, "B", "1.0"),
                old("v1", true, "V", "1.5"),
                old("v2", true, "V", "1.5"),
            ],
            kept_("B", t0, false),
        ),
        (
            "never stable: nothing kept",
            beside(None, "1.0", None, None, t0),
            pile(),
            None,
        ),
    ];
    for (case, beside, old, expected) in cases {
        assert_eq!(kept(beside, &old), expected, "{case}");
    }
}

#[test]
fn retire_table() {
    let t0 = Instant::now();
    let keep = |revision: &str, expired| Kept {
        revision: revision.to_owned(),
        since: t0,
        expired,
    };
    // Of the kept revision A: serving, running unready, stopped; B: a later unready revision of
    // the same version.
    let old_ = || {
        vec![
            old("a1", true, "A", "1.0"),
            old("a2", true, "A", "1.0"),
            old("a3", false, "A", "1.0"),
            old("b1", true, "B", "1.0"),
        ]
    };
    // (case, replicas, ready current, old, kept, expected)
    let cases = [
        (
            "new revision ready: all retire",
            2,
            2,
            old_(),
            Some(keep("A", false)),
            vec![retired("a1"), retired("a2"), retired("a3"), retired("b1")],
        ),
        (
            "not ready: the kept revision's running instances serve on, no other revision",
            2,
            1,
            old_(),
            Some(keep("A", false)),
            vec![retain("a1"), retain("a2"), retired("a3"), retired("b1")],
        ),
        (
            "its time is over: it retires though nothing new is ready",
            1,
            0,
            old_(),
            Some(keep("A", true)),
            vec![retired("a1"), retired("a2"), retired("a3"), retired("b1")],
        ),
        (
            "nothing kept: every old instance retires",
            1,
            0,
            old_(),
            None,
            vec![retired("a1"), retired("a2"), retired("a3"), retired("b1")],
        ),
        (
            "an instance without a revision label is never kept",
            1,
            0,
            vec![Old {
                id: "x".to_owned(),
                running: true,
                revision: None,
                version: Some("1.0".to_owned()),
            }],
            Some(keep("A", false)),
            vec![retired("x")],
        ),
    ];
    for (case, n, ready, old, kept, expected) in cases {
        assert_eq!(retire(n, ready, &old, kept.as_ref()), expected, "{case}");
    }
    assert_eq!(retire(1, 1, &[], None), vec![], "no old revision");
}
