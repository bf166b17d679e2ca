//! The configuration documents' own checks: what is refused before any
//! setting is read (lists, non-finite numbers, files of another kind).

/// serde reads a struct from a list as well as from a table, field
/// by field in order: `a = [5, 50]` was a breaker with
/// `consecutive_failures = 5` and `failure_rate = 50`, and a JSON
/// document `[]` an empty configuration, where no setting is a list
/// (found by a hostile review).
#[test]
fn a_list_is_refused_where_a_table_is_expected() {
    use crate::registry::RegistryConfig;
    let toml = [
        ("[breakers]\na = [5, 50]\n", "breakers.a"),
        ("[limiters]\napi = [100, \"1s\", 20]\n", "limiters.api"),
        ("[trackers]\nt = [0.5]\n", "trackers.t"),
        (
            "[keyed_limiters.k]\nrate = 1\noverflow = [1]\n",
            "keyed_limiters.k.overflow",
        ),
        ("[bulkheads]\nb = []\n", "bulkheads.b"),
    ];
    for (text, path) in toml {
        let err = RegistryConfig::from_toml(text).expect_err(text);
        assert_eq!(err.fields().len(), 1, "{text}");
        assert_eq!(err.fields()[0].path(), path, "{text}");
        assert!(err.fields()[0].message().contains("a list"), "{err}");
    }
    let err = RegistryConfig::from_json("[]").unwrap_err();
    assert!(err.fields()[0].message().contains("a list"), "{err}");
    let err = RegistryConfig::from_json(r#"{"breakers": {"a": [5]}}"#).unwrap_err();
    assert_eq!(err.fields()[0].path(), "breakers.a");
}

/// A path of another extension was read whole before it was refused:
/// `load("/dev/zero")` read until memory ran out, and a file of
/// another kind that is not UTF-8 was refused as unreadable rather
/// than for its extension (found by a hostile review).
#[test]
fn a_file_of_another_extension_is_refused_before_it_is_read() {
    use crate::registry::RegistryConfig;
    let path = std::env::temp_dir().join(format!("fusebox-cfg-{}.bin", std::process::id()));
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let err = RegistryConfig::load(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(err.fields()[0].path(), "(file)");
    assert!(
        err.fields()[0]
            .message()
            .ends_with("the extension must be .toml or .json"),
        "{err}"
    );
}

/// `load` read any file whole: a `*.toml` that was a FIFO blocked
/// forever, one that was a link to `/dev/zero` (or a log) filled the
/// memory, and a file saved with a byte-order mark (as Windows editors
/// do) was refused with "expected value at line 1 column 1". Files
/// are now checked to be regular and at most `MAX_FILE_BYTES`, and
/// the mark is dropped.
#[test]
fn load_reads_regular_files_of_bounded_size_and_drops_a_byte_order_mark() {
    use crate::registry::RegistryConfig;
    let dir = std::env::temp_dir().join(format!("fusebox-cfg-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bom_json = dir.join("bom.json");
    std::fs::write(
        &bom_json,
        "\u{feff}{\"limiters\": {\"api\": {\"rate\": 5}}}",
    )
    .unwrap();
    let bom_toml = dir.join("bom.toml");
    std::fs::write(&bom_toml, "\u{feff}[limiters.api]\nrate = 7\n").unwrap();
    let big = dir.join("big.toml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let lines = usize::try_from(RegistryConfig::MAX_FILE_BYTES).unwrap() / line.len() + 1;
    std::fs::write(&big, line.repeat(lines)).unwrap();
    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"[limiters.caf\xe9]\nrate = 1\n").unwrap();
    let a_dir = dir.join("a-directory.toml");
    std::fs::create_dir_all(&a_dir).unwrap();

    let json = RegistryConfig::load(&bom_json);
    let toml = RegistryConfig::load(&bom_toml);
    let errors = [&big, &latin1, &a_dir].map(|p| RegistryConfig::load(p).unwrap_err());
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(json.unwrap().limiters["api"].rate, Some(5));
    assert_eq!(toml.unwrap().limiters["api"].rate, Some(7));
    let messages = errors.map(|e| e.fields()[0].message().to_owned());
    assert!(
        messages[0].ends_with("larger than 16777216 bytes"),
        "{messages:?}"
    );
    assert!(messages[1].contains("not UTF-8"), "{messages:?}");
    assert!(messages[2].ends_with("not a regular file"), "{messages:?}");
}

/// A device behind a configuration's name is refused unread.
#[cfg(unix)]
#[test]
fn load_refuses_a_device_named_like_a_configuration() {
    use crate::registry::RegistryConfig;
    let link = std::env::temp_dir().join(format!("fusebox-cfg-zero-{}.toml", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let err = RegistryConfig::load(&link).unwrap_err();
    std::fs::remove_file(&link).unwrap();
    assert!(
        err.fields()[0].message().ends_with("not a regular file"),
        "{err}"
    );
}

/// TOML writes `nan` and `inf`, which no JSON number holds: they were
/// read as null, so an optional field given one was silently its
/// default (`burst = nan` a burst of `rate`, `window = inf` a window
/// of 64, `max_queued = -inf` no queue) instead of refused (found by
/// a hostile review).
#[test]
fn a_toml_nan_or_infinity_is_refused_on_its_path() {
    use crate::registry::RegistryConfig;
    let cases = [
        (
            "[limiters.a]\nrate = 5\nburst = nan\n",
            "limiters.a.burst",
            "nan",
        ),
        (
            "[breakers.a]\nfailure_rate = 50\nwindow = inf\n",
            "breakers.a.window",
            "inf",
        ),
        ("events_capacity = +nan\n", "events_capacity", "nan"),
        (
            "[bulkheads.a]\nmax_concurrent = 2\nmax_queued = -inf\n",
            "bulkheads.a.max_queued",
            "-inf",
        ),
        (
            "[trackers.a]\nsample_rate = -nan\n",
            "trackers.a.sample_rate",
            "nan",
        ),
        (
            "[keyed_limiters.a]\nrate = 1\noverflow = { rate = 1, burst = inf }\n",
            "keyed_limiters.a.overflow.burst",
            "inf",
        ),
    ];
    for (text, path, shown) in cases {
        let err = RegistryConfig::from_toml(text).expect_err(text);
        assert_eq!(err.fields().len(), 1, "{text}");
        assert_eq!(err.fields()[0].path(), path, "{text}");
        assert_eq!(
            err.fields()[0].message(),
            format!("must be a finite number, got {shown}"),
            "{text}"
        );
    }
    // Finite floats are read as before.
    let config = RegistryConfig::from_toml("[trackers.a]\nsample_rate = 0.5\n").unwrap();
    assert_eq!(config.trackers["a"].sample_rate.to_bits(), 0.5f64.to_bits());
}

/// A capacity the events channel cannot hold is a typed error on its
/// path, never a panic in the channel (found by a hostile review:
/// `i64::MAX` overflowed its power of two; 2^40 slots aborted the
/// process allocating them).
#[test]
fn an_events_capacity_out_of_range_is_refused() {
    use crate::events::Events;
    use crate::registry::RegistryConfig;
    use crate::Registry;
    for capacity in [Events::MAX_CAPACITY + 1, 1 << 40, i64::MAX as usize] {
        let config = RegistryConfig::from_toml(&format!("events_capacity = {capacity}\n")).unwrap();
        let built = std::panic::catch_unwind(|| Registry::from_config(&config).map(|_| ()));
        let err = built
            .unwrap_or_else(|_| panic!("{capacity}: a panic"))
            .expect_err("refused");
        assert_eq!(err.fields()[0].path(), "events_capacity", "{capacity}");
    }
    let config = RegistryConfig::from_toml("events_capacity = 1048576\n").unwrap();
    let registry = Registry::from_config(&config).unwrap();
    assert_eq!(registry.events().capacity(), Events::MAX_CAPACITY);
    // 0 was read as 1 (as `Events::new` reads it), a silent clamp where
    // an operator may have meant no events: refused, on its path.
    let config = RegistryConfig::from_toml("events_capacity = 0\n").unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap_err().to_string(),
        "events_capacity: must be at least 1 event (none cannot be configured), got 0"
    );
    let config = RegistryConfig::from_toml("events_capacity = 1\n").unwrap();
    assert_eq!(
        Registry::from_config(&config).unwrap().events().capacity(),
        1
    );
    // The builder, infallible, keeps the bound.
    let registry = Registry::builder().events_capacity(usize::MAX).build();
    assert_eq!(registry.events().capacity(), Events::MAX_CAPACITY);
}

/// A FIFO named like a configuration is refused unopened: opening one
/// for reading waits for a writer, so the check after the open came too
/// late and `load` blocked until some process wrote to it (the case
/// 3044b6a meant to refuse). The watchdog only unblocks a failing run.
#[cfg(unix)]
#[test]
fn load_refuses_a_fifo_without_waiting_for_a_writer() {
    use crate::registry::RegistryConfig;
    let fifo = std::env::temp_dir().join(format!("fusebox-cfg-fifo-{}.toml", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    let loader = std::thread::spawn(move || tx.send(RegistryConfig::load(&path)).unwrap());
    let loaded = rx.recv_timeout(std::time::Duration::from_secs(30));
    if loaded.is_err() {
        // Blocked in the open: a writer lets it go on, to fail below.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo));
    }
    loader.join().unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let err = loaded
        .expect("load waited for a writer on the FIFO")
        .unwrap_err();
    assert!(
        err.fields()[0].message().ends_with("not a regular file"),
        "{err}"
    );
}

/// A file name is the caller's, perhaps from a command line or a
/// variable: `load` showed it raw in its error, so a name holding a
/// newline forged a line in any log of that error (found by a hostile
/// review). It is escaped (and cut) as the document's text is, for each
/// refusal that names the file.
#[test]
fn a_file_name_with_control_characters_is_shown_escaped() {
    use crate::registry::RegistryConfig;
    let dir = std::env::temp_dir().join(format!("fusebox-cfg-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let forged = "x\n2026-12-06T10:00:00Z  INFO all checks passed\r";
    let not_utf8 = dir.join(format!("{forged}.toml"));
    std::fs::write(&not_utf8, b"[limiters.a]\nrate = \xff\n").unwrap();
    let cases = [
        (not_utf8, "not UTF-8"),
        (dir.join(format!("{forged}.txt")), "extension"),
        (dir.join(format!("{forged}-missing.json")), "cannot read"),
    ];
    for (path, why) in cases {
        let err = RegistryConfig::load(&path).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains(why), "{shown:?}");
        assert!(!shown.contains(['\n', '\r']), "{shown:?}");
        assert!(shown.contains("x\\n2026-12-06"), "{shown:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two names of one table that differ only in case are one name to an
/// environment variable (read in lowercase): both were built, and a
/// variable for either was refused only once set. Refused on the second
/// name's path; one name in each of two tables is fine (each kind has its
/// own names), and so is one name with capitals.
#[test]
fn names_differing_only_in_case_are_refused() {
    use crate::registry::{Registry, RegistryConfig};
    let text = "[limiters.Api]\nrate = 1\n[limiters.api]\nrate = 2\n[limiters.b]\nrate = 3\n";
    let err = RegistryConfig::from_toml(text)
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "limiters.api: the name of limiters.Api in another case (environment variables, read in lowercase, could not tell them apart)"
    );
    let json = r#"{"bulkheads": {"DB": {"max_concurrent": 1}, "db": {"max_concurrent": 1}, "Db": {"max_concurrent": 1}}}"#;
    let err = RegistryConfig::from_json(json)
        .unwrap()
        .validate()
        .unwrap_err();
    let paths: Vec<_> = err
        .fields()
        .iter()
        .map(crate::registry::FieldError::path)
        .collect();
    assert_eq!(paths, ["bulkheads.Db", "bulkheads.db"]);
    assert!(
        err.fields()
            .iter()
            .all(|f| f.message().contains("of bulkheads.DB ")),
        "{err}"
    );
    let text = "[breakers.api]\nconsecutive_failures = 1\n[limiters.api]\nrate = 1\n\
                [keyed_limiters.api]\nrate = 1\n[bulkheads.api]\nmax_concurrent = 1\n\
                [trackers.api]\n[limiters.Payments]\nrate = 1\n";
    let registry = Registry::from_config(&RegistryConfig::from_toml(text).unwrap()).unwrap();
    assert!(registry.get_breaker("api").is_some() && registry.get_limiter("api").is_some());
    assert!(registry.get_limiter("Payments").is_some());
}
