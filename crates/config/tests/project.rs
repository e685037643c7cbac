//! `sluice.yaml` validation: every problem reported together, with
//! positions, suggestions, interpolation and redaction.

use std::path::Path;
use std::time::Duration;

use sluice_config::{
    self as config, Diagnostic, GrantKind, MappingSource, MaxDeletes, ModelRead, PluginRef,
    SyncMode,
};

fn env(name: &str) -> Option<String> {
    match name {
        "PG_URL" => Some("postgres://app:hunter2@db/warehouse".into()),
        "HOOK_TOKEN" => Some("tok-123".into()),
        _ => None,
    }
}

fn write_project(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.yaml"), text).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("plugins/webhook.wasm"), b"\0asm").unwrap();
    dir
}

fn errors(text: &str) -> Vec<Diagnostic> {
    let dir = write_project(text);
    config::validate_with_env(dir.path(), &env).expect_err("project should be invalid")
}

fn find<'a>(diags: &'a [Diagnostic], needle: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| panic!("no diagnostic containing {needle:?} in {diags:#?}"))
}

const GOOD: &str = r#"
sources:
  warehouse:
    plugin: postgres
    config:
      url: "${PG_URL}"
      pool: 4
      tls: true
    grants: ["postgres://db:5432"]
destinations:
  hook:
    plugin: ./plugins/webhook.wasm
    config: { url: "https://hooks.example.com/in", token: "Bearer ${HOOK_TOKEN}" }
    grants: ["https://hooks.example.com", "dir:out:/out:rw"]
    rate_limit: { requests: 10, per_ms: 1000, concurrency: 2 }
transforms:
  hash_pii: { plugin: pii-hash, config: { fields: [email] } }
models:
  users:
    source: warehouse
    query: select id, email, plan from users
    primary_key: [tenant, id]
  events:
    source: warehouse
    object: events
    primary_key: event_id
syncs:
  users_to_hook:
    model: users
    destination: hook
    object: Contact
    mode: mirror
    identifier: external_id
    mappings:
      - { from: id, to: external_id, type: string }
      - { from: email, to: email }
      - { constant: { source: sluice }, to: meta }
    transforms: [hash_pii]
    batch_size: 500
    schedule: "*/15 * * * *"
  events_out:
    model: events
    destination: hook
    object: Event
    mode: append
"#;

#[test]
fn a_valid_project_loads_completely() {
    let dir = write_project(GOOD);
    let p = config::validate_with_env(dir.path(), &env).unwrap();
    let src = &p.sources["warehouse"];
    assert_eq!(src.plugin, PluginRef::Installed("postgres".into()));
    let json: serde_json::Value = serde_json::from_str(&src.config_json()).unwrap();
    assert_eq!(json["url"], "postgres://app:hunter2@db/warehouse");
    assert_eq!(json["pool"], 4);
    assert_eq!(json["tls"], true);
    let hook = &p.destinations["hook"];
    assert_eq!(
        hook.instance.plugin,
        PluginRef::Path(dir.path().join("./plugins/webhook.wasm"))
    );
    assert_eq!(hook.rate_limit.unwrap().concurrency, 2);
    assert!(
        matches!(&hook.instance.grants[1].kind, GrantKind::Dir(d) if d.writable && d.guest == "/out")
    );
    let users = &p.models["users"];
    assert_eq!(users.primary_key, vec!["tenant", "id"]);
    assert!(matches!(&users.read, ModelRead::Query(q) if q.expose().starts_with("select")));
    let s = &p.syncs["users_to_hook"];
    assert_eq!(s.mode, SyncMode::Mirror);
    assert_eq!(s.mappings.len(), 3);
    assert!(matches!(&s.mappings[2].source, MappingSource::Constant(_)));
    assert_eq!(
        (s.mappings[1].location.line, s.mappings[1].location.column),
        (36, 9)
    );
    assert_eq!(s.batch_size, Some(500));
    assert_eq!(p.syncs["events_out"].identifier, None);
    assert_eq!(
        p.sync("users_to_hoook").unwrap_err(),
        "unknown sync `users_to_hoook`; did you mean `users_to_hook`?"
    );
}

#[test]
fn secrets_never_print() {
    let dir = write_project(GOOD);
    let p = config::validate_with_env(dir.path(), &env).unwrap();
    let dump = format!("{p:?}");
    assert!(!dump.contains("hunter2"), "secret leaked in Debug");
    assert!(!dump.contains("tok-123"), "secret leaked in Debug");
    assert!(dump.contains("<redacted>"));
    let token = &p.destinations["hook"].instance.config["token"];
    assert_eq!(format!("{token:?}"), "String(<redacted>)");
}

#[test]
fn malformed_yaml_reports_line_and_column() {
    let diags = errors("sources:\n  a: {plugin: x\nmodels: {}\n");
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert!(d.message.starts_with("malformed YAML"), "{d}");
    assert!(d.line >= 2, "{d}");
    assert!(d.to_string().contains("sluice.yaml:"), "{d}");
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let text = GOOD.replace(
        "    destination: hook\n    object: Contact",
        "    destinaton: hook\n    object: Contact",
    );
    let diags = errors(&text);
    let d = find(&diags, "unknown key `destinaton`");
    assert!(d.message.contains("did you mean `destination`?"), "{d}");
    assert_eq!((d.line, d.column), (30, 5));
    assert!(d.expected.as_deref().unwrap().contains("destination"));
    // The missing required key is reported too.
    find(&diags, "sync `users_to_hook` is missing `destination`");
}

#[test]
fn missing_env_var_names_variable_and_position() {
    let text = GOOD.replace("${HOOK_TOKEN}", "${HOOK_TOKN}");
    let diags = errors(&text);
    let d = find(&diags, "environment variable `HOOK_TOKN` is not set");
    assert_eq!(d.line, 13);
    assert!(d
        .to_string()
        .starts_with(&format!("{}:13:", d.file.display())));
}

#[test]
fn every_problem_is_reported_together() {
    let text = r#"
sources:
  warehouse:
    plugin: postgres
    config: { password: "${NOPE}" }
    grantz: []
destinations:
  hook: { plugin: ./plugins/missing.wasm, grants: ["ftp//bad"] }
models:
  users:
    source: warehous
    query: select 1
    primary_key: []
  dup:
    source: warehouse
    object: t
    query: select 2
    primary_key: [id, id]
syncs:
  s1:
    model: userz
    destination: hook
    object: Contact
    mode: upsrt
    identifier: ext
    mappings:
      - { from: id, to: ext }
      - { from: other, to: ext }
      - { to: x }
      - { from: a, to: y, type: float }
    transforms: [nope]
    batch_size: 0
    schedule: ""
  s3:
    model: users
    destination: hook
    object: C
    mode: upsert
    identifier: ext
    mappings:
      - { from: id, to: ext }
    schedule: "61 * * * *"
  s4:
    model: users
    destination: hook
    object: C
    mode: upsert
    identifier: ext
    mappings:
      - { from: id, to: ext }
    schedule: every fortnight
  s5:
    model: users
    destination: hook
    object: C
    mode: upsert
    identifier: ext
    mappings:
      - { from: id, to: ext }
    after: s22
  s6:
    model: users
    destination: hook
    object: C
    mode: upsert
    identifier: ext
    mappings:
      - { from: id, to: ext }
    after: s7
  s7:
    model: users
    destination: hook
    object: C
    mode: upsert
    identifier: ext
    mappings:
      - { from: id, to: ext }
    after: s6
  s2:
    model: users
    destination: hook
    object: C
    mode: upsert
    after_max_rejected: 3
"#;
    let diags = errors(text);
    for d in &diags {
        println!("{d}");
    }
    for needle in [
        "environment variable `NOPE` is not set",
        "unknown key `grantz` in source `warehouse`; did you mean `grants`?",
        "plugin file `./plugins/missing.wasm` of destination `hook` not found",
        "grant `ftp//bad` of destination `hook` is invalid",
        "unknown source `warehous`; did you mean `warehouse`?",
        "the primary_key of model `users` is empty",
        "model `dup` has both `query` and `object`",
        "column `id` appears twice in the primary_key of model `dup`",
        "unknown model `userz`; did you mean `users`?",
        "unknown mode `upsrt`; did you mean `upsert`?",
        "field `ext` is the target of two mappings",
        "mapping #3 of sync `s1` has neither `from` nor `constant`",
        "unknown type `float`",
        "unknown transform `nope`: none is defined",
        "`batch_size` of sync `s1` is `0`",
        "`schedule` of sync `s1` is empty",
        "`schedule` of sync `s3`: cron expression `61 * * * *`",
        "`schedule` of sync `s4`: `every fortnight`",
        "unknown sync `s22`; did you mean `s2`? (in sync `s5`)",
        "`after` of sync `s6` makes a loop: s6 after s7 after s6",
        "`after` of sync `s7` makes a loop: s7 after s6 after s7",
        "sync `s2` has no `identifier`",
        "`after_max_rejected` of sync `s2` stops a sequence, but the sync has no `after`",
    ] {
        let d = find(&diags, needle);
        assert!(d.line > 0 && d.column > 0, "{d}");
    }
    // Sorted by position, and nothing is reported twice.
    let mut sorted = diags.clone();
    sorted.sort_by_key(|d| (d.line, d.column));
    assert_eq!(sorted, diags);
    let mut texts: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    texts.dedup();
    assert_eq!(texts.len(), diags.len());
}

#[test]
fn identifier_must_be_mapped_without_transforms() {
    let text = GOOD.replace("    transforms: [hash_pii]\n", "");
    let text = text.replace(
        "{ from: id, to: external_id, type: string }",
        "{ from: id, to: ext_id }",
    );
    let diags = errors(&text);
    let d = find(
        &diags,
        "identifier field `external_id` of sync `users_to_hook` is not the target of any mapping",
    );
    assert!(d.expected.as_deref().unwrap().contains("ext_id"));
}

#[test]
fn unreadable_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = config::validate(dir.path()).unwrap_err();
    assert!(
        d[0].message.contains("cannot read the project file"),
        "{}",
        d[0]
    );
    let d = config::parse_project(
        Path::new("/p"),
        Path::new("/p/sluice.yaml"),
        "# nothing\n",
        &env,
    )
    .unwrap_err();
    assert!(d[0].message.contains("empty"));
}

#[test]
fn secret_in_an_error_is_redacted() {
    // A grant built from a secret is invalid: the message must not echo it.
    let text = GOOD.replace("\"postgres://db:5432\"", "\"${PG_URL}/x\"");
    let diags = errors(&text);
    let d = find(&diags, "a grant of source `warehouse` is invalid");
    assert!(!d.to_string().contains("hunter2"), "{d}");
}

#[test]
fn the_deletion_guard_reads_counts_and_shares() {
    let dir = write_project(GOOD);
    let p = config::validate_with_env(dir.path(), &env).unwrap();
    let s = &p.syncs["users_to_hook"];
    assert_eq!((s.max_deletes, s.allow_empty), (None, false));

    let text = GOOD.replace(
        "    batch_size: 500\n",
        "    batch_size: 500\n    max_deletes: 10%\n    allow_empty: true\n",
    );
    let dir = write_project(&text);
    let p = config::validate_with_env(dir.path(), &env).unwrap();
    let s = &p.syncs["users_to_hook"];
    assert_eq!(s.max_deletes, Some(MaxDeletes::Percent(10.0)));
    assert!(s.allow_empty);
    assert_eq!(s.max_deletes.unwrap().limit(250), 25);
    assert_eq!(MaxDeletes::Count(3).limit(250), 3);

    let text = GOOD.replace(
        "    batch_size: 500\n",
        "    batch_size: 500\n    max_deletes: 120%\n    allow_empty: maybe\n",
    );
    let diags = errors(&text);
    let d = find(&diags, "`max_deletes` of sync `users_to_hook` is `120%`");
    assert!(d.expected.as_deref().unwrap().contains("10%"));
    find(&diags, "expected true or false for `allow_empty`");
}

#[test]
fn limits_are_read_project_wide_and_per_plugin() {
    let text = format!(
        "{GOOD}limits:\n  memory: 128MiB\n  sockets: 4\n  max_wait: 2m\n  run_deadline: 1h\n"
    )
    .replace(
        "    grants: [\"postgres://db:5432\"]\n",
        "    grants: [\"postgres://db:5432\"]\n    limits: { memory: 64MiB, call_deadline: 30s, message_bytes: 1KiB }\n",
    );
    let dir = write_project(&text);
    let p = config::validate_with_env(dir.path(), &env).unwrap_or_else(|d| panic!("{d:#?}"));
    let source = &p.sources["warehouse"].limits;
    // The plugin's own key wins; the project's fills the rest.
    assert_eq!(source.memory, Some(64 << 20));
    assert_eq!(source.sockets, Some(4));
    assert_eq!(source.message_bytes, Some(1 << 10));
    let limits = source.apply(&sluice_runtime::Limits::default());
    assert_eq!(limits.memory_bytes, 64 << 20);
    assert_eq!(limits.wall_deadline, std::time::Duration::from_secs(30));
    assert_eq!(limits.sockets, 4);
    assert_eq!(limits.requests_in_flight, 64, "a default kept");
    let hook = &p.destinations["hook"].instance.limits;
    assert_eq!((hook.memory, hook.sockets), (Some(128 << 20), Some(4)));
    // Syncs take the project's max_wait and run_deadline unless they set their own.
    let sync = &p.syncs["users_to_hook"];
    assert_eq!(sync.max_wait, Some(std::time::Duration::from_secs(120)));
    assert_eq!(
        sync.run_deadline,
        Some(std::time::Duration::from_secs(3600))
    );

    let dir = write_project(GOOD);
    let p = config::validate_with_env(dir.path(), &env).unwrap();
    assert!(p.sources["warehouse"].limits.is_empty());
    assert_eq!(p.syncs["users_to_hook"].run_deadline, None);
}

#[test]
fn bad_limits_are_reported_with_their_line() {
    let text = format!(
        "{GOOD}limits:\n  memory: 12 parsecs\n  sockets: 0\n  run_deadline: soon\n  cpu: 1s\n"
    )
    .replace(
        "    grants: [\"postgres://db:5432\"]\n",
        "    grants: [\"postgres://db:5432\"]\n    limits: { requests_in_flight: lots, message_bytes: 0 }\n",
    );
    let diags = errors(&text);
    let memory = find(&diags, "`memory` in the project's `limits`");
    assert!(memory.message.contains("parsecs"), "{memory}");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_eq!(memory.line, line_of("12 parsecs"), "{memory}");
    find(&diags, "`sockets` in the project's `limits` is `0`");
    find(&diags, "`run_deadline` in the project's `limits`");
    find(&diags, "`cpu`");
    let flight = find(
        &diags,
        "`requests_in_flight` in the `limits` of source `warehouse`",
    );
    assert_eq!(flight.line, line_of("requests_in_flight: lots"), "{flight}");
    find(
        &diags,
        "`message_bytes` in the `limits` of source `warehouse` is zero",
    );
}

#[test]
fn a_daily_cap_is_read_per_destination_and_per_sync_and_a_bad_one_is_pinpointed() {
    let with_daily = GOOD
        .replace(
            "rate_limit: { requests: 10, per_ms: 1000, concurrency: 2 }",
            "rate_limit: { requests: 10, per_ms: 1000, concurrency: 2, daily: 250000 }",
        )
        .replace(
            "    batch_size: 500\n",
            "    batch_size: 500\n    rate_limit: { requests: 5, per_ms: 1000, concurrency: 1, daily: 40 }\n",
        );
    let dir = write_project(&with_daily);
    let p = config::validate_with_env(dir.path(), &env).unwrap();
    assert_eq!(
        p.destinations["hook"].rate_limit.unwrap().daily,
        Some(250_000)
    );
    assert_eq!(p.syncs["users_to_hook"].rate_limit.unwrap().daily, Some(40));
    // Without `daily` there is no cap.
    let plain = config::validate_with_env(write_project(GOOD).path(), &env).unwrap();
    assert_eq!(plain.destinations["hook"].rate_limit.unwrap().daily, None);

    for bad in ["0", "many", "-3", "4294967296"] {
        let text = with_daily.replace("daily: 40", &format!("daily: {bad}"));
        let diags = errors(&text);
        let d = find(&diags, "`daily` in the rate_limit of sync `users_to_hook`");
        let line = text.lines().position(|l| l.contains("daily: ")).unwrap();
        let line = line
            + 1
            + text
                .lines()
                .skip(line + 1)
                .position(|l| l.contains("daily: "))
                .unwrap();
        assert_eq!(d.line, line + 1, "{bad}: {d}");
        let column = text
            .lines()
            .nth(line)
            .unwrap()
            .find(&format!("daily: {bad}"))
            .unwrap()
            + 8;
        assert_eq!(d.column, column, "{bad}: {d}");
        assert_eq!(
            d.expected.as_deref(),
            Some("an integer from 1 to 4294967295"),
            "{d}"
        );
    }
}

/// A project whose dbt project (`analytics/`) has a manifest with one model.
fn with_dbt_manifest(text: &str) -> tempfile::TempDir {
    let dir = write_project(text);
    std::fs::create_dir_all(dir.path().join("analytics/target")).unwrap();
    let manifest = serde_json::json!({"nodes": {"model.analytics.fct_events": {
        "resource_type": "model", "name": "fct_events",
        "relation_name": "\"wh\".\"marts\".\"fct_events\"",
        "config": {"materialized": "table", "unique_key": "event_id"}}}});
    std::fs::write(
        dir.path().join("analytics/target/manifest.json"),
        manifest.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn dbt_models_resolve_from_the_manifest_and_mistakes_name_their_line() {
    let text = GOOD.replace(
        "  events:\n    source: warehouse\n    object: events\n    primary_key: event_id\n",
        "  events:\n    source: warehouse\n    dbt: fct_events\n    project: analytics\n",
    );
    let dir = with_dbt_manifest(&text);
    let project = config::validate_with_env(dir.path(), &env).unwrap_or_else(|d| panic!("{d:?}"));
    let events = &project.models["events"];
    assert_eq!(events.primary_key, vec!["event_id"]);
    assert_eq!(
        events.read,
        ModelRead::Query(config::Str::plain(
            "select * from \"wh\".\"marts\".\"fct_events\""
        ))
    );
    assert_eq!(
        events.dbt.as_ref().unwrap().unique_id,
        "model.analytics.fct_events"
    );

    let invalid = |text: &str| {
        let dir = with_dbt_manifest(text);
        config::validate_with_env(dir.path(), &env).expect_err("project should be invalid")
    };
    let typo = text.replace("dbt: fct_events", "dbt: fct_event");
    let diags = invalid(&typo);
    let d = find(&diags, "no model `fct_event`");
    assert!(d.message.contains("did you mean `fct_events`"), "{d:?}");
    let line = typo
        .lines()
        .position(|l| l.contains("dbt: fct_event"))
        .unwrap()
        + 1;
    assert_eq!(d.line, line);
    let diags = invalid(&text.replace(
        "    project: analytics\n",
        "    project: analytics\n    query: select 1\n",
    ));
    find(&diags, "has both `dbt` and `query`");
    let diags = invalid(&GOOD.replace(
        "    object: events\n",
        "    object: events\n    project: x\n",
    ));
    find(&diags, "has `project` but no `dbt`");
    let diags = invalid(&text.replace("project: analytics", "project: elsewhere"));
    find(&diags, "run `dbt parse`");
}

#[test]
fn a_schedule_names_its_latest_tick() {
    let every = config::Schedule::parse("every 15m").unwrap();
    assert_eq!(every, config::Schedule::Every(Duration::from_secs(900)));
    assert_eq!(every.latest_tick(36_000 + 899), Some(36_000));
    assert_eq!(every.latest_tick(36_000 + 900), Some(36_900));
    let cron = config::Schedule::parse("30 8 * * *").unwrap();
    // 2026-01-02T10:00:00Z: the tick is 08:30 that day.
    assert_eq!(cron.latest_tick(1_767_348_000), Some(1_767_342_600));
    assert_eq!(cron.text(), "30 8 * * *");
    for bad in ["every 0s", "every 1.5s", "* * *", "*/0 * * * *"] {
        assert!(config::Schedule::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn notify_reads_its_url_secret_and_events_and_names_what_is_wrong() {
    let good = format!(
        "{GOOD}notify:\n  url: \"https://hooks.example.com/${{HOOK_TOKEN}}\"\n  secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n  events: [failed, started, failed]\n  rejected_threshold: 50\n"
    );
    let dir = write_project(&good);
    let project = config::validate_with_env(dir.path(), &env).unwrap();
    let notify = project.notify.as_ref().unwrap();
    assert_eq!(notify.url.expose(), "https://hooks.example.com/tok-123");
    assert_eq!(
        notify.events,
        [config::RunEvent::Started, config::RunEvent::Failed],
        "deduplicated, in lifecycle order"
    );
    assert_eq!(notify.rejected_threshold, 50);
    // A URL holding a secret is hidden wherever the project's secrets are.
    assert!(project
        .secret_values()
        .contains(&"https://hooks.example.com/tok-123".to_owned()));
    let defaults = write_project(&format!("{GOOD}notify: {{ url: \"http://h/x\" }}\n"));
    let n = config::validate_with_env(defaults.path(), &env)
        .unwrap()
        .notify
        .unwrap();
    assert_eq!(
        (n.events.len(), n.rejected_threshold, n.secret),
        (4, 1, None)
    );

    let diags = errors(&format!(
        "{GOOD}notify:\n  url: ftp://h/x\n  secret: whsec_not base64!\n  events: [started, done]\n  rejected_threshold: 0\n  retries: 3\n"
    ));
    let line = |needle: &str| find(&diags, needle).line;
    let base = GOOD.lines().count();
    assert_eq!(line("not an http(s) URL"), base + 2);
    assert_eq!(line("is not `whsec_` followed by base64"), base + 3);
    assert!(!find(&diags, "whsec_").message.contains("not base64!"));
    assert_eq!(line("unknown event `done`"), base + 4);
    assert_eq!(line("`rejected_threshold` of `notify`"), base + 5);
    assert_eq!(line("unknown key `retries`"), base + 6);
    let missing = errors(&format!("{GOOD}notify: {{ secret: x }}\n"));
    find(&missing, "has no `url`");
}
