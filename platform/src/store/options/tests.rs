use super::*;

#[test]
fn a_tenant_holds_a_bounded_number_of_options_and_writes_are_all_or_nothing() {
    let mut conn = super::super::test_conn(&["t", "u"]);
    let option = |key: String, editable: bool| TenantOption {
        category: "c".into(),
        key,
        value: "v".into(),
        encrypted: false,
        editable,
        from_manifest: false,
    };
    let count = |conn: &Connection, tenant: &str| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM options WHERE tenant_id = ?1",
            [tenant],
            |r| r.get(0),
        )
        .unwrap()
    };
    let tx = conn.transaction().unwrap();
    let mut all: Vec<TenantOption> = (0..MAX_PER_TENANT - 1)
        .map(|i| option(format!("k{i}"), true))
        .collect();
    all.push(option("fixed".into(), false));
    assert_eq!(put_all(&tx, "t", &all).unwrap(), Written::All);
    tx.commit().unwrap();
    assert_eq!(count(&conn, "t"), MAX_PER_TENANT);
    // One more new key is refused, with the existing ones it came with.
    let refused = put_all(
        &conn,
        "t",
        &[option("k0".into(), true), option("new".into(), true)],
    );
    assert!(matches!(refused, Err(StoreError::Invalid(m)) if m.contains("at most 10000")));
    assert_eq!(count(&conn, "t"), MAX_PER_TENANT);
    // Existing keys may still change; a non-editable one stops the whole write.
    assert_eq!(
        put_all(&conn, "t", &[option("k1".into(), true)]).unwrap(),
        Written::All
    );
    let mut changed = option("k2".into(), true);
    changed.value = "changed".into();
    assert_eq!(
        put_all(&conn, "t", &[changed, option("fixed".into(), true)]).unwrap(),
        Written::NotEditable
    );
    assert_eq!(get(&conn, "t", "c", "k2").unwrap().unwrap().value, "v");
    // Another tenant has its own count.
    assert_eq!(
        put_all(&conn, "u", &[option("new".into(), true)]).unwrap(),
        Written::All
    );
}

#[test]
fn a_tenants_options_take_a_bounded_number_of_bytes() {
    let conn = super::super::test_conn(&["t", "u"]);
    let option = |key: &str, len: usize| TenantOption {
        category: "c".into(),
        key: key.into(),
        value: "v".repeat(len),
        encrypted: false,
        editable: true,
        from_manifest: false,
    };
    let value = 64 * 1024;
    // Each "c" + "k000".. + the value, then a pad up to the bound exactly ("c" + "pad").
    let fit = (MAX_BYTES_PER_TENANT as usize) / (1 + 4 + value);
    let mut all: Vec<TenantOption> = (0..fit)
        .map(|i| option(&format!("k{i:03}"), value))
        .collect();
    let room = MAX_BYTES_PER_TENANT as usize - fit * (1 + 4 + value);
    all.push(option("pad", room - 4));
    assert_eq!(put_all(&conn, "t", &all).unwrap(), Written::All);
    // (write, accepted)
    let cases = [
        (option("new", value), false),
        // At the bound, a write that does not grow it still passes.
        (option("k000", value), true),
        (option("k001", 10), true),
        (option("k001", value), true),
        (option("k001", value + 1), false),
    ];
    for (write, accepted) in cases {
        let what = format!("{} of {} bytes", write.key, write.value.len());
        let done = put_all(&conn, "t", &[write]);
        match done {
            Ok(Written::All) => assert!(accepted, "{what} accepted"),
            Err(StoreError::Invalid(m)) => {
                assert!(!accepted && m.contains("16 MiB"), "{what}: {m}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Another tenant is not affected.
    assert_eq!(
        put_all(&conn, "u", &[option("new", value)]).unwrap(),
        Written::All
    );
}

#[test]
fn changes_apply_in_order_and_only_to_their_tenant() {
    let conn = super::super::test_conn(&["t", "u"]);
    let option = |key: &str, value: &str, editable: bool| TenantOption {
        category: "cat".into(),
        key: key.into(),
        value: value.into(),
        encrypted: false,
        editable,
        from_manifest: false,
    };
    for tenant in ["t", "u"] {
        replace(&conn, tenant, &option("gone", "x", true)).unwrap();
        replace(&conn, tenant, &option("locked", "mine", false)).unwrap();
    }
    let mut seeded = option("new", "d", false);
    seeded.from_manifest = true;
    apply(
        &conn,
        "t",
        &[
            OptionChange::Delete {
                category: "cat".into(),
                key: "gone".into(),
            },
            OptionChange::MarkEditable {
                category: "cat".into(),
                key: "locked".into(),
            },
            OptionChange::Replace(seeded.clone()),
        ],
    )
    .unwrap();
    assert_eq!(get(&conn, "t", "cat", "gone").unwrap(), None);
    assert_eq!(
        get(&conn, "t", "cat", "locked").unwrap(),
        Some(option("locked", "mine", true))
    );
    assert_eq!(get(&conn, "t", "cat", "new").unwrap(), Some(seeded));
    assert_eq!(category(&conn, "u", "cat").unwrap().len(), 2);
    assert!(!get(&conn, "u", "cat", "locked").unwrap().unwrap().editable);
}

/// Brings `tenant` to `count` options taking `bytes` in all, adding "f"/"f0"… of value "v" and
/// "f"/"pad" through SQL: the caps are reached in a few statements.
pub(crate) fn fill(conn: &Connection, tenant: &str, count: i64, bytes: i64) {
    let more = count - totals(conn, tenant).0 - 1;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 WHERE ?2 > 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)
         INSERT INTO options (tenant_id, category, key, value) SELECT ?1, 'f', 'f' || i, 'v' FROM n",
        params![tenant, more],
    )
    .unwrap();
    let pad = bytes - totals(conn, tenant).1 - option_bytes("f", "pad", "");
    conn.execute(
        "INSERT INTO options (tenant_id, category, key, value) VALUES (?1, 'f', 'pad', replace(hex(zeroblob(?2)), '00', 'v'))",
        params![tenant, pad],
    )
    .unwrap();
    assert_eq!(totals(conn, tenant), (count, bytes));
}

/// (count, bytes) of `tenant`'s options.
pub(crate) fn totals(conn: &Connection, tenant: &str) -> (i64, i64) {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(length(CAST(category AS BLOB)) + length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)
         FROM options WHERE tenant_id = ?1",
        [tenant],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

fn new_option(key: &str, len: usize) -> TenantOption {
    TenantOption {
        category: "c".into(),
        key: key.into(),
        value: "v".repeat(len),
        encrypted: false,
        editable: true,
        from_manifest: false,
    }
}

/// (case, options held, bytes held, batch (key, value length), accepted)
type Batch = (
    &'static str,
    i64,
    i64,
    &'static [(&'static str, usize)],
    bool,
);

#[test]
fn a_key_written_twice_in_one_batch_counts_once_and_its_last_value_weighs() {
    const BIG: usize = 64 * 1024;
    let cases: &[Batch] = &[
        (
            "one new key twice, one short of the count",
            MAX_PER_TENANT - 1,
            1 << 20,
            &[("n", 1), ("n", 2)],
            true,
        ),
        (
            "two new keys, one short of the count",
            MAX_PER_TENANT - 1,
            1 << 20,
            &[("n", 1), ("m", 1)],
            false,
        ),
        (
            "an existing key twice, at the count",
            MAX_PER_TENANT,
            1 << 20,
            &[("big", 1), ("big", 2)],
            true,
        ),
        (
            "a new key shrunk by its second write",
            10,
            MAX_BYTES_PER_TENANT - 10,
            &[("n", BIG), ("n", 1)],
            true,
        ),
        (
            "a new key grown by its second write",
            10,
            MAX_BYTES_PER_TENANT - 10,
            &[("n", 1), ("n", BIG)],
            false,
        ),
        (
            "an existing key twice, each a little longer",
            10,
            MAX_BYTES_PER_TENANT - 100,
            &[("big", BIG + 60), ("big", BIG + 60)],
            true,
        ),
        (
            "an existing key emptied, then grown, at the bytes",
            10,
            MAX_BYTES_PER_TENANT,
            &[("big", 1), ("big", BIG + 1)],
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for &(case, count, bytes, batch, accepted) in cases {
        let conn = super::super::test_conn(&["t"]);
        // Every case starts with "big", besides the fill.
        put(&conn, "t", &new_option("big", BIG)).unwrap();
        fill(&conn, "t", count, bytes);
        let options: Vec<TenantOption> = batch.iter().map(|&(k, len)| new_option(k, len)).collect();
        let done = put_all(&conn, "t", &options);
        match &done {
            Ok(Written::All) => {
                // The last write of each key is what the table holds.
                for (key, _) in batch {
                    let last = batch.iter().rev().find(|(k, _)| k == key).unwrap().1;
                    let held = get(&conn, "t", "c", key).unwrap().unwrap().value.len();
                    assert_eq!(held, last, "{case}: {key}");
                }
            }
            Err(StoreError::Invalid(m)) => {
                assert!(m.contains("at most"), "{case}: {m}");
                assert_eq!(
                    totals(&conn, "t"),
                    (count, bytes),
                    "{case}: nothing written"
                );
            }
            other => panic!("{case}: {other:?}"),
        }
        if done.is_ok() != accepted {
            wrong.push(format!("{case}: {done:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn changes_weigh_what_they_leave_in_order() {
    let delete = |key: &str| OptionChange::Delete {
        category: "c".into(),
        key: key.into(),
    };
    let replace = |key: &str, len: usize| OptionChange::Replace(new_option(key, len));
    let mark = |key: &str| OptionChange::MarkEditable {
        category: "c".into(),
        key: key.into(),
    };
    let over = Some(OverCap::Count(MAX_PER_TENANT + 1));
    // (case, options held beyond the cap, changes, verdict)
    let cases = [
        (
            "one out, one in",
            0,
            vec![delete("x"), replace("n", 1)],
            None,
        ),
        (
            "in, then out again",
            0,
            vec![replace("n", 1), delete("n")],
            None,
        ),
        ("in, then marked", 0, vec![replace("n", 1), mark("n")], over),
        (
            "out, then marked",
            0,
            vec![delete("x"), mark("x"), replace("n", 1)],
            None,
        ),
        (
            "one out, two in",
            0,
            vec![delete("x"), replace("n", 1), replace("m", 1)],
            over,
        ),
        (
            "an absent key deleted, then written",
            0,
            vec![delete("n"), replace("n", 1)],
            over,
        ),
        ("only marked", 0, vec![mark("x"), mark("n")], None),
        // Past the cap already (an older Berth wrote settings past it): changes that do not
        // add a key pass, one that does is refused.
        ("past it: a value changed", 5, vec![replace("x", 100)], None),
        (
            "past it: one in",
            5,
            vec![replace("n", 1)],
            Some(OverCap::Count(MAX_PER_TENANT + 6)),
        ),
    ];
    for (case, beyond, changes, verdict) in cases {
        let conn = super::super::test_conn(&["t"]);
        put(&conn, "t", &new_option("x", 1)).unwrap();
        fill(&conn, "t", MAX_PER_TENANT + beyond, 1 << 20);
        let weighed = over_cap(&conn, "t", changes.iter().map(OptionChange::weighed)).unwrap();
        assert_eq!(weighed, verdict, "{case}");
    }
}

#[test]
fn growing_bytes_past_their_cap_is_refused_with_the_total() {
    let conn = super::super::test_conn(&["t"]);
    fill(&conn, "t", 10, MAX_BYTES_PER_TENANT - 10);
    let fits = [("c", "k", After::Value("vvvv"))];
    assert_eq!(over_cap(&conn, "t", fits).unwrap(), None);
    let past = [("c", "k", After::Value("vvvvvvvvv"))];
    let over = over_cap(&conn, "t", past).unwrap();
    assert_eq!(over, Some(OverCap::Bytes(MAX_BYTES_PER_TENANT + 1)));
    assert!(over.unwrap().to_string().contains("16 MiB"));
}
