//! Plugin authors' and operators' tooling, through the `sluice` binary:
//! install and pin by digest, grants versus requests at validate time,
//! scaffolding and building a Rust plugin, fixtures, and record/replay.

use sluice_tests as common;

use sluice_config::PluginPin;
use sluice_registry::store::{self as plugin_store, Lock};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CACHE_DIR", common::shared_cache_dir())
        .env("SLUICE_TOOLCHAIN_DIR", toolchain_dir())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

fn failed(o: Output) -> String {
    let t = text(&o);
    assert!(!o.status.success(), "expected a failure:\n{t}");
    t
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A project whose destination `hook` uses `plugin` with `url` and `grant`.
fn write_hook_project(dir: &Path, plugin: &str, url: &str, grant: &str, transform: Option<&str>) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/people.csv"), "id,email\n1,Ada@Example.com\n").unwrap();
    let (transforms, uses) = match transform {
        Some(t) => (
            format!("transforms:\n  lower: {{ plugin: {t}, config: {{ column: email }} }}\n"),
            ", transforms: [lower]",
        ),
        None => (String::new(), ""),
    };
    std::fs::write(
        dir.join("sluice.yaml"),
        format!(
            r#"sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  hook: {{ plugin: {plugin}, config: {{ url: "{url}" }}, grants: ["{grant}"] }}
{transforms}models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people_to_hook: {{ model: people, destination: hook, object: events, mode: upsert, identifier: id{uses} }}
"#
        ),
    )
    .unwrap();
}

#[test]
fn install_records_the_lock_and_a_changed_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    let out = ok(sluice(&["plugin", "install", "webhook", "-C", p(project)]));
    assert!(
        out.contains("installed webhook 0.1.0 (destination, sluice:plugin@0.1.0)"),
        "{out}"
    );
    assert!(out.contains("requests  ${config.url}"), "{out}");

    let lock = Lock::load(project).unwrap();
    let [entry] = lock.plugins.as_slice() else {
        panic!("{lock:?}")
    };
    assert_eq!(
        (
            entry.name.as_str(),
            entry.version.as_str(),
            entry.world.as_str(),
            entry.wit.as_str()
        ),
        ("webhook", "0.1.0", "destination", "sluice:plugin@0.1.0")
    );
    let stored = project.join(&entry.path);
    assert_eq!(
        stored,
        project.join(format!(
            ".sluice/plugins/webhook/0.1.0/{}.wasm",
            entry.sha256
        ))
    );
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        sluice_registry::builtin::WEBHOOK
    );
    // Installing again changes nothing; the lock is byte-for-byte stable.
    let before = std::fs::read_to_string(project.join("sluice.lock")).unwrap();
    let again = ok(sluice(&["plugin", "install", "webhook", "-C", p(project)]));
    assert!(again.contains("already installed"), "{again}");
    assert_eq!(
        std::fs::read_to_string(project.join("sluice.lock")).unwrap(),
        before
    );

    // Another component under the same name and version is refused, showing
    // both digests. (A custom section appended keeps it a valid component.)
    let mut changed = sluice_registry::builtin::WEBHOOK.to_vec();
    changed.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'y']);
    let changed_path = dir.path().join("changed-webhook.wasm");
    std::fs::write(&changed_path, &changed).unwrap();
    let inspect = sluice(&["plugin", "inspect", p(&changed_path), "--json"]);
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&inspect)));
    let new_digest = inspected["sha256"].as_str().unwrap();
    assert_ne!(new_digest, entry.sha256);
    let err = failed(sluice(&[
        "plugin",
        "install",
        p(&changed_path),
        "-C",
        p(project),
    ]));
    assert!(
        err.contains(&format!("installed sha256 {}", entry.sha256))
            && err.contains(&format!("this component sha256 {new_digest}"))
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("sluice.lock")).unwrap(),
        before
    );

    // A pinned reference validates (the webhook asks for its URL, granted).
    write_hook_project(
        project,
        "webhook@0.1.0",
        "https://in.example.com/hook",
        "https://*.example.com",
        None,
    );
    ok(sluice(&["validate", "-C", p(project)]));
    let short = &entry.sha256[..16];
    write_hook_project(
        project,
        &format!("webhook@sha256:{short}"),
        "https://in.example.com/hook",
        "https://*.example.com",
        None,
    );
    ok(sluice(&["validate", "-C", p(project)]));
    write_hook_project(
        project,
        "webhook@9.9.9",
        "https://in.example.com/hook",
        "https://*.example.com",
        None,
    );
    let err = failed(sluice(&["validate", "-C", p(project)]));
    assert!(err.contains("`webhook@9.9.9` is not installed"), "{err}");

    // Tampering with the stored component: refused at validate and at run.
    write_hook_project(
        project,
        "webhook@0.1.0",
        "https://in.example.com/hook",
        "https://*.example.com",
        None,
    );
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes.extend_from_slice(b"\0\0");
    std::fs::write(&stored, bytes).unwrap();
    let err = failed(sluice(&["validate", "-C", p(project)]));
    assert!(
        err.contains("it changed after it was installed")
            && err.contains(&format!("sluice.lock records {}", entry.sha256)),
        "{err}"
    );
    let err = failed(sluice(&["run", "people_to_hook", "-C", p(project)]));
    assert!(err.contains("it changed after it was installed"), "{err}");
}

#[test]
fn validate_refuses_a_plugin_that_asks_for_more_than_granted() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    // Built-in webhook (not installed): it requests its URL.
    write_hook_project(
        project,
        "webhook",
        "https://evil.test/collect",
        "https://*.example.com",
        None,
    );
    let err = failed(sluice(&["validate", "-C", p(project)]));
    assert!(
        err.contains("sluice.yaml:4:")
            && err.contains(
                "destination `hook` (plugin webhook 0.1.0) requests `https://evil.test:443`"
            )
            && err.contains("(grants: https://*.example.com)"),
        "{err}"
    );
    // `*` does not cover a loopback request: the intersection never names
    // an address the grant did not.
    write_hook_project(
        project,
        "webhook",
        "http://127.0.0.1:9/hook",
        "http://*:*",
        None,
    );
    let err = failed(sluice(&["validate", "-C", p(project)]));
    assert!(err.contains("requests `http://127.0.0.1:9`"), "{err}");
    // --skip-plugins checks the file only.
    ok(sluice(&["validate", "--skip-plugins", "-C", p(project)]));
    write_hook_project(
        project,
        "webhook",
        "http://127.0.0.1:9/hook",
        "http://127.0.0.1:*",
        None,
    );
    ok(sluice(&["validate", "-C", p(project)]));
}

/// Where scaffolded Rust plugins are built: shared across runs, so only the
/// first run compiles the SDK's dependencies.
fn scaffold_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugin-scaffold")
}

fn build_project(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "build", p(dir)])
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .output()
        .unwrap();
    ok(out)
}

#[test]
fn a_scaffolded_rust_transform_builds_passes_its_fixture_and_installs_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("lowercase");
    let out = ok(sluice(&[
        "plugin",
        "new",
        "lowercase",
        "--lang",
        "rust",
        "--kind",
        "transform",
        "--dir",
        p(&plugin_dir),
    ]));
    assert!(out.contains("created lowercase"), "{out}");
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "sluice-sdk/src/lib.rs",
        "wit/plugin.wit",
        "fixtures/example.json",
    ] {
        assert!(plugin_dir.join(f).is_file(), "{f} missing");
    }

    build_project(&plugin_dir);
    let out = ok(sluice(&["plugin", "test", p(&plugin_dir)]));
    assert!(
        out.contains("pass example") && out.contains("1 passed, 0 failed"),
        "{out}"
    );
    // The project directory stands for its component, as for `test`.
    let out = ok(sluice(&["plugin", "inspect", p(&plugin_dir)]));
    assert!(
        out.contains("lowercase 0.1.0: A transform of one column")
            && out.contains("world         transform"),
        "{out}"
    );

    // A fixture that expects the wrong thing fails with a diff.
    let bad = dir.path().join("bad-fixtures");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("wrong.json"),
        r#"{"config": {"column": "email"}, "input": [{"email": "A@B.C"}], "expect": {"rows": [{"email": "A@B.C"}]}}"#,
    )
    .unwrap();
    let err = failed(sluice(&[
        "plugin",
        "test",
        p(&plugin_dir),
        "--fixtures",
        p(&bad),
    ]));
    assert!(
        err.contains("FAIL wrong")
            && err.contains(r#"expected {"email":"A@B.C"}"#)
            && err.contains(r#"got {"email":"a@b.c"}"#),
        "{err}"
    );

    // Install 0.1.0, then build and install 0.2.0 beside it.
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let component = plugin_dir.join("dist/lowercase.wasm");
    ok(sluice(&[
        "plugin",
        "install",
        p(&component),
        "-C",
        p(&project),
    ]));
    let manifest = plugin_dir.join("Cargo.toml");
    let toml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        toml.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    build_project(&plugin_dir);
    let out = ok(sluice(&[
        "plugin",
        "install",
        p(&component),
        "-C",
        p(&project),
    ]));
    assert!(
        out.contains("installed lowercase 0.2.0 (transform"),
        "{out}"
    );

    let lock = Lock::load(&project).unwrap();
    let versions: Vec<&str> = lock.plugins.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["0.1.0", "0.2.0"]);
    assert_ne!(lock.plugins[0].sha256, lock.plugins[1].sha256);
    for e in &lock.plugins {
        assert!(project.join(&e.path).is_file());
    }

    // A pin loads exactly that component; a bare name is ambiguous now.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runtime = common::runtime().runtime;
    for entry in &lock.plugins {
        let pin = PluginPin::Version(entry.version.clone());
        let plugin = plugin_store::load_installed(&runtime, &project, "lowercase", Some(&pin))
            .unwrap()
            .unwrap();
        assert_eq!(plugin.digest(), entry.sha256);
        let spec = rt.block_on(async {
            let mut i = plugin.instantiate(&Default::default()).await.unwrap();
            i.spec().await.unwrap()
        });
        assert_eq!(spec.version, entry.version);
    }
    write_hook_project(
        &project,
        "webhook",
        "https://in.example.com/hook",
        "https://in.example.com",
        Some("lowercase@0.1.0"),
    );
    ok(sluice(&["validate", "-C", p(&project)]));
    write_hook_project(
        &project,
        "webhook",
        "https://in.example.com/hook",
        "https://in.example.com",
        Some("lowercase"),
    );
    let err = failed(sluice(&["validate", "-C", p(&project)]));
    assert!(
        err.contains("plugin `lowercase` has several installed versions")
            && err.contains("lowercase@0.2.0"),
        "{err}"
    );
}

#[test]
fn a_recorded_webhook_replays_offline_with_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let cassette = dir.path().join("cassette.json");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(common::receiver());
    let url = receiver.url.clone();
    let fixture = |rows: &str| {
        format!(
            r#"{{"config": {{"url": "{}", "secret": "{secret}", "headers": {{"x-api-key": "k-0123456789"}}}},
                "target": {{"object": "people", "mode": "upsert", "identifier": "id"}},
                "input": {rows},
                "expect": {{"results": ["accepted", "accepted"]}}}}"#,
            url
        )
    };
    std::fs::write(
        fixtures.join("two_rows.json"),
        fixture(
            r#"[{"id": 1, "email": "ada@example.com"}, {"id": 2, "email": "grace@example.com"}]"#,
        ),
    )
    .unwrap();
    let grant = receiver.grant();
    let base = [
        "plugin",
        "test",
        "webhook",
        "--fixtures",
        p(&fixtures),
        "--json",
        "--allow",
        &grant,
    ];

    let mut record = base.to_vec();
    record.extend(["--record", p(&cassette)]);
    let recorded: serde_json::Value = serde_json::from_slice(&sluice(&record).stdout).unwrap();
    assert_eq!(recorded[0]["passed"], true, "{recorded}");
    assert_eq!(receiver.rows().len(), 2);

    let tape = std::fs::read_to_string(&cassette).unwrap();
    let cassette_json: serde_json::Value = serde_json::from_str(&tape).unwrap();
    let interaction = &cassette_json["interactions"][0];
    assert_eq!(interaction["request"]["method"], "POST");
    assert_eq!(interaction["request"]["url"], receiver.url);
    assert_eq!(
        interaction["request"]["headers"]["webhook-signature"],
        "<redacted>"
    );
    assert_eq!(interaction["request"]["headers"]["x-api-key"], "<redacted>");
    assert_eq!(interaction["response"]["status"], 200);
    assert!(
        !tape.contains(secret) && !tape.contains("k-0123456789"),
        "{tape}"
    );

    // Replay answers from the cassette: nothing reaches the receiver. (It
    // stays up: a closed port could be taken by another test's server.)
    let mut replay = base.to_vec();
    replay.extend(["--replay", p(&cassette)]);
    let out = sluice(&replay);
    let replayed: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(receiver.rows().len(), 2, "replay sent nothing");
    assert_eq!(replayed[0]["got"], recorded[0]["got"]);
    assert_eq!(
        replayed[0]["got"]["results"],
        serde_json::json!(["accepted", "accepted"])
    );

    // A request the cassette does not hold fails clearly.
    std::fs::write(
        fixtures.join("two_rows.json"),
        fixture(r#"[{"id": 1, "email": "changed@example.com"}, {"id": 2, "email": "grace@example.com"}]"#),
    )
    .unwrap();
    let mut replay_text: Vec<&str> = replay.clone();
    replay_text.retain(|a| *a != "--json");
    let err = failed(sluice(&replay_text));
    assert!(
        err.contains("FAIL two_rows") && err.contains("has a different body"),
        "{err}"
    );
    // Replay needs no grant for what the cassette recorded...
    let mut ungranted: Vec<&str> = replay_text.clone();
    let pos = ungranted.iter().position(|a| *a == "--allow").unwrap();
    ungranted.drain(pos..pos + 2);
    std::fs::write(
        fixtures.join("two_rows.json"),
        fixture(
            r#"[{"id": 1, "email": "ada@example.com"}, {"id": 2, "email": "grace@example.com"}]"#,
        ),
    )
    .unwrap();
    let out = ok(sluice(&ungranted));
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    // ... but grants stay in force for anything else.
    std::fs::write(
        fixtures.join("two_rows.json"),
        fixture(r#"[{"id": 1, "email": "ada@example.com"}]"#)
            .replace(&url, "http://127.0.0.1:9/elsewhere"),
    )
    .unwrap();
    let err = failed(sluice(&ungranted));
    assert!(err.contains("denied"), "{err}");
}

/// Issue 16: in a plugin project, `--record` and `--replay` use
/// `cassettes/cassette.json`, apart from the fixtures; a cassette left among
/// the fixtures is skipped, saying so, rather than failing every fixture.
#[test]
fn a_project_records_into_cassettes_and_replays_without_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("hook");
    std::fs::create_dir_all(project.join("dist")).unwrap();
    std::fs::create_dir_all(project.join("fixtures")).unwrap();
    std::fs::write(
        project.join("dist/webhook.wasm"),
        sluice_registry::builtin::WEBHOOK,
    )
    .unwrap();
    std::fs::write(
        project.join("sluice-plugin.json"),
        r#"{"name": "webhook", "lang": "rust", "kind": "destination", "component": "dist/webhook.wasm"}"#,
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(common::receiver());
    std::fs::write(
        project.join("fixtures/one_row.json"),
        format!(
            r#"{{"config": {{"url": "{}"}}, "input": [{{"id": 1}}], "expect": {{"results": ["accepted"]}}}}"#,
            receiver.url
        ),
    )
    .unwrap();

    let grant = receiver.grant();
    let out = ok(sluice(&[
        "plugin",
        "test",
        p(&project),
        "--allow",
        &grant,
        "--record",
    ]));
    let cassette = project.join("cassettes/cassette.json");
    assert!(
        out.contains("1 passed, 0 failed")
            && out.contains(&format!("recorded {}", cassette.display())),
        "{out}"
    );
    assert_eq!(receiver.rows().len(), 1);

    // A cassette copied among the fixtures is skipped and named.
    let stray = project.join("fixtures/cassette.json");
    std::fs::copy(&cassette, &stray).unwrap();
    let out = ok(sluice(&["plugin", "test", p(&project), "--replay"]));
    assert!(
        out.contains("1 passed, 0 failed")
            && out.contains(&format!(
                "skipped {}: a cassette, not a fixture",
                stray.display()
            )),
        "{out}"
    );
    assert_eq!(receiver.rows().len(), 1, "replay sent nothing");

    // Outside a project a cassette path is needed.
    let err = failed(sluice(&[
        "plugin",
        "test",
        "webhook",
        "--fixtures",
        p(&project.join("fixtures")),
        "--replay",
    ]));
    assert!(err.contains("--replay needs a CASSETTE path"), "{err}");
}

/// Issue 16: `validate` asks each sync's destination what it supports, as
/// `run` does, so it never says ok to a mode `run` refuses.
#[test]
fn validate_refuses_a_write_mode_the_destination_does_not_support() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::write(project.join("data/people.csv"), "id,email\n1,a@x.com\n").unwrap();
    // The hostile plugin's `echo-secret` destination writes `events` in
    // upsert mode only (it asks for `dir:${config.dir}`, granted here).
    let write = |mode: &str| {
        std::fs::write(
            project.join("sluice.yaml"),
            format!(
                r#"sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  api: {{ plugin: "{}", config: {{ attack: echo-secret, dir: /x }}, grants: ["dir:data:/x"] }}
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  people_to_api: {{ model: people, destination: api, object: events, mode: {mode}, identifier: id }}
"#,
                common::HOSTILE_PATH
            ),
        )
        .unwrap();
    };
    write("append");
    let err = failed(sluice(&["validate", "-C", p(project)]));
    assert!(
        err.contains("sluice.yaml:8:")
            && err.contains("sync `people_to_api`")
            && err.contains("needs `events` to support append writes; it supports: upsert"),
        "{err}"
    );
    // `run` refuses it for the same reason.
    let err = failed(sluice(&["run", "people_to_api", "-C", p(project)]));
    assert!(
        err.contains("needs `events` to support append writes"),
        "{err}"
    );
    write("upsert");
    ok(sluice(&["validate", "-C", p(project)]));
}

/// Issue 16: a build that fails leaves no component behind for `plugin test`
/// to pass against; scaffolds describe what they are, write fixtures as a
/// person would, and ignore Python's caches.
#[test]
fn a_failed_build_removes_the_stale_component_and_scaffolds_read_well() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("upper");
    ok(sluice(&[
        "plugin",
        "new",
        "upper",
        "--lang",
        "rust",
        "--kind",
        "transform",
        "--dir",
        p(&plugin_dir),
    ]));
    let fixture = std::fs::read_to_string(plugin_dir.join("fixtures/example.json")).unwrap();
    assert!(
        fixture.starts_with("{\n  \"") && fixture.ends_with("}\n") && fixture.lines().count() > 10,
        "{fixture}"
    );
    let lib = std::fs::read_to_string(plugin_dir.join("src/lib.rs")).unwrap();
    assert!(
        !lib.contains("\"Lower-cases one column\"")
            && lib.contains("A transform of one column (scaffolded: it lower-cases it)"),
        "{lib}"
    );

    // A component from an earlier build, then a build that fails.
    let component = plugin_dir.join("dist/upper.wasm");
    std::fs::create_dir_all(component.parent().unwrap()).unwrap();
    std::fs::write(&component, sluice_registry::builtin::WEBHOOK).unwrap();
    std::fs::write(plugin_dir.join("Cargo.toml"), "[package\nnot toml").unwrap();
    let err = failed(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["plugin", "build", p(&plugin_dir)])
            .env("CARGO_TARGET_DIR", scaffold_target_dir())
            .output()
            .unwrap(),
    );
    assert!(err.contains("failed"), "{err}");
    assert!(!component.exists(), "the stale component is gone");
    for command in ["test", "inspect"] {
        let err = failed(sluice(&["plugin", command, p(&plugin_dir)]));
        assert!(
            err.contains("is not built yet: run `sluice plugin build"),
            "{command}: {err}"
        );
    }

    // Python: caches ignored, the same pretty fixture.
    let py = dir.path().join("py-upper");
    ok(sluice(&[
        "plugin",
        "new",
        "upper",
        "--lang",
        "python",
        "--kind",
        "transform",
        "--dir",
        p(&py),
    ]));
    let ignore = std::fs::read_to_string(py.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "__pycache__/"), "{ignore}");
    let fixture = std::fs::read_to_string(py.join("fixtures/example.json")).unwrap();
    assert!(fixture.starts_with("{\n  \""), "{fixture}");
    let app = std::fs::read_to_string(py.join("app.py")).unwrap();
    assert!(!app.contains("\"Lower-cases one column\""), "{app}");

    // Syntax errors name the file, line and column with the parser's
    // message, before any toolchain is installed or anything is built.
    std::fs::write(py.join("app.py"), app.replacen("def ", "def (", 1)).unwrap();
    let err = failed(sluice(&["plugin", "build", p(&py)]));
    let at = format!("{}:", py.join("app.py").display());
    assert!(
        err.contains(&at) && err.contains("SyntaxError: ") && err.contains("nothing was built"),
        "{err}"
    );
    let js = dir.path().join("js-upper");
    ok(sluice(&[
        "plugin",
        "new",
        "upper",
        "--lang",
        "js",
        "--kind",
        "transform",
        "--dir",
        p(&js),
    ]));
    let source = std::fs::read_to_string(js.join("plugin.js")).unwrap();
    let line = source.lines().position(|l| l == "  spec() {").unwrap() + 1;
    std::fs::write(
        js.join("plugin.js"),
        source.replacen("  spec() {", "  spec( {", 1),
    )
    .unwrap();
    let err = failed(sluice(&["plugin", "build", p(&js)]));
    // The parser stops at the edited line or the one after it.
    let file = js.join("plugin.js").display().to_string();
    assert!(
        (err.contains(&format!("{file}:{line}:"))
            || err.contains(&format!("{file}:{}:", line + 1)))
            && err.contains("SyntaxError: ")
            && err.contains("nothing was built"),
        "{err}"
    );
}

/// Where `sluice plugin build` installs componentize-py and componentize-js
/// in tests: one folder for the whole run, so each is installed once.
fn toolchain_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugin-toolchains")
}

/// `sluice ARGS` run from `cwd`, with the tests' toolchain folder.
fn sluice_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(cwd)
        .env("SLUICE_CACHE_DIR", common::shared_cache_dir())
        .env("SLUICE_TOOLCHAIN_DIR", toolchain_dir())
        .output()
        .unwrap()
}

/// Every file under `dir` (not the built component) that mentions `needle`.
fn files_mentioning(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_mentioning(&path, needle));
        } else if path.extension().is_none_or(|e| e != "wasm")
            && String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle)
        {
            found.push(path);
        }
    }
    found
}

/// Issue 16: a Python or JavaScript destination made with only the binary.
/// `plugin new` writes the SDK and the pinned toolchain's manifest from the
/// binary (nothing in the project names this checkout); `plugin build`
/// installs the toolchain into the user cache, not the project; the
/// scaffold passes its fixture, installs, and a sync through it reaches a
/// receiver that first answers 429 with `Retry-After` (the SDK's
/// `row_result()` / `rowResult()` makes the rows rate-limited, and the run
/// sends them again).
fn a_scaffolded_destination_builds_and_syncs_from_the_binary_alone(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hook-{lang}");
    let plugin_dir = dir.path().join(&name);
    ok(sluice_in(
        dir.path(),
        &[
            "plugin",
            "new",
            &name,
            "--lang",
            lang,
            "--kind",
            "destination",
        ],
    ));
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let mentions = files_mentioning(&plugin_dir, &checkout.display().to_string());
    assert!(mentions.is_empty(), "the checkout is named in {mentions:?}");
    let manifest = std::fs::read_to_string(plugin_dir.join("sluice-plugin.json")).unwrap();
    assert!(!manifest.contains("\"sdk\""), "{manifest}");

    let out = ok(sluice_in(dir.path(), &["plugin", "build", &name]));
    let component = plugin_dir.join(format!("dist/{name}.wasm"));
    assert!(component.is_file(), "{out}");
    // The toolchain went to the cache, nothing into the project.
    for local in [".venv", "node_modules"] {
        assert!(!plugin_dir.join(local).exists(), "{local} in the project");
    }
    let installed = match lang {
        "python" => vec![toolchain_dir().join("python/componentize-py-0.25.1/.complete")],
        _ => std::fs::read_dir(toolchain_dir().join("js"))
            .unwrap()
            .map(|e| e.unwrap().path().join(".complete"))
            .filter(|p| p.is_file())
            .collect(),
    };
    assert!(
        installed.iter().any(|p| p.is_file()),
        "no finished toolchain in {}",
        toolchain_dir().display()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(common::receiver());
    let grant = receiver.grant();
    let fixture_path = plugin_dir.join("fixtures/example.json");
    let fixture = std::fs::read_to_string(&fixture_path).unwrap();
    std::fs::write(
        &fixture_path,
        fixture.replace("http://127.0.0.1:8080/hook", &receiver.url),
    )
    .unwrap();
    let out = ok(sluice_in(
        dir.path(),
        &["plugin", "test", &name, "--allow", &grant],
    ));
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    assert_eq!(receiver.requests.lock().unwrap().len(), 1);

    let project = dir.path().join("project");
    write_hook_project(&project, &name, &receiver.url, &grant, None);
    ok(sluice_in(
        dir.path(),
        &["plugin", "install", &name, "-C", p(&project)],
    ));
    receiver.script.lock().unwrap().push_back((429, Some("1")));
    let out = ok(sluice_in(
        dir.path(),
        &["run", "people_to_hook", "-C", p(&project)],
    ));
    assert!(out.contains("sync `people_to_hook`: succeeded"), "{out}");
    assert!(
        receiver.script.lock().unwrap().is_empty(),
        "the 429 was answered"
    );
    let requests = receiver.requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "the fixture's and the sync's, once");
    let sent = requests[1].body.as_array().expect("a JSON array of rows");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["email"], "Ada@Example.com");
}

#[test]
fn a_python_destination_scaffold_builds_and_syncs_from_the_binary_alone() {
    a_scaffolded_destination_builds_and_syncs_from_the_binary_alone("python");
}

#[test]
fn a_javascript_destination_scaffold_builds_and_syncs_from_the_binary_alone() {
    a_scaffolded_destination_builds_and_syncs_from_the_binary_alone("js");
}

/// The shell blocks of a guide marked `<!-- guide-test -->` (the line
/// before a ```sh fence), in order, as one script.
fn guide_script(guide: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(guide);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut script = String::from("set -euxo pipefail\n");
    let mut lines = text.lines();
    let mut blocks = 0;
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- guide-test -->" {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence, "```sh",
            "{guide}: a guide-test marker stands before a ```sh block"
        );
        for line in lines.by_ref().take_while(|l| *l != "```") {
            script.push_str(line);
            script.push('\n');
        }
        blocks += 1;
    }
    assert!(blocks >= 5, "{guide} has {blocks} guide-test blocks");
    script
}

/// Issue 16: each language's guide, followed literally from an empty
/// folder with only the `sluice` binary on PATH, brings its rows, tidied by
/// the plugin it builds, to a local receiver.
fn a_guide_runs_as_written(guide: &str) {
    let script = guide_script(guide);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(common::receiver());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOOK_URL", &receiver.url)
        .env("SLUICE_CACHE_DIR", common::shared_cache_dir())
        .env("SLUICE_TOOLCHAIN_DIR", toolchain_dir())
        // Rust guides share one target dir, so the SDK's dependencies are
        // compiled once per CI run.
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .env_remove("SLUICE_PROJECT")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{guide} failed:\n{log}");
    assert!(
        log.contains("sync `people_to_hook`: succeeded"),
        "{guide}:\n{log}"
    );
    let mut emails: Vec<String> = receiver
        .rows()
        .iter()
        .map(|r| r["email"].as_str().unwrap_or_default().to_string())
        .collect();
    emails.sort();
    assert_eq!(emails, ["ada@example.com", "grace@example.com"], "{log}");
}

#[test]
fn the_rust_guide_runs_as_written() {
    a_guide_runs_as_written("sdk/README.md");
}

#[test]
fn the_python_guide_runs_as_written() {
    a_guide_runs_as_written("sdk/python/README.md");
}

#[test]
fn the_javascript_guide_runs_as_written() {
    a_guide_runs_as_written("sdk/js/README.md");
}
