//! Build-script helper: compiles plugin crates to `wasm32-wasip2`
//! components the way wasmtime's `test-programs` artifacts are built, so
//! `cargo build` and `cargo test` are the only commands anyone runs.
//!
//! Every caller builds into one shared target directory
//! (`<repo>/target/wasm-plugins`) with one profile (release, `+simd128`), so
//! the SDK and the guest dependencies compile once for the built-in plugins
//! and the test-only hostile plugin alike.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A built component: its package name and where the `.wasm` file is.
pub struct Component {
    pub name: String,
    pub path: PathBuf,
}

impl Component {
    /// `field-map` → `FIELD_MAP`, for generated constants.
    pub fn ident(&self) -> String {
        self.name.replace('-', "_").to_uppercase()
    }
}

/// The repository root, from a crate directory two levels below it
/// (`crates/NAME`) or one (`tests`).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    while !dir.join("wit").is_dir() {
        assert!(dir.pop(), "no wit/ folder above the crate");
    }
    dir
}

/// Build `packages` of the workspace at `manifest` (relative to the
/// repository root) and tell Cargo to rerun when their sources, the SDK or
/// the contract change.
pub fn build(manifest: &str, packages: &[&str]) -> Vec<Component> {
    let root = repo_root();
    let manifest = root.join(manifest);
    let workspace = manifest.parent().expect("a manifest has a folder");
    for path in ["wit", "sdk/src", "sdk/Cargo.toml"] {
        rerun_if_changed(&root.join(path));
    }
    rerun_if_changed(&manifest);
    for p in packages {
        rerun_if_changed(&workspace.join(p).join("src"));
        rerun_if_changed(&workspace.join(p).join("Cargo.toml"));
    }
    // A single-crate workspace (tests/hostile) keeps its sources beside
    // the manifest.
    rerun_if_changed(&workspace.join("src"));
    run_cargo(&manifest, packages, &target_dir(&root));
    let wasm_dir = target_dir(&root).join("wasm32-wasip2").join("release");
    packages
        .iter()
        .map(|name| {
            let path = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
            assert!(path.exists(), "{} was not built", path.display());
            Component {
                name: name.to_string(),
                path,
            }
        })
        .collect()
}

fn target_dir(root: &Path) -> PathBuf {
    root.join("target").join("wasm-plugins")
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

fn run_cargo(manifest: &Path, packages: &[&str], target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir)
    // Let LLVM vectorise byte loops (UTF-8 checks, case folding, copies)
    // into Wasm SIMD, which wasmtime compiles to the host's vector
    // instructions; without it they run a byte at a time.
    .args([
        "--config",
        "target.wasm32-wasip2.rustflags=[\"-Ctarget-feature=+simd128\"]",
    ]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // Settings meant for the host build (clippy's wrapper, host rustflags,
    // coverage, the host's profile) must not leak into the guest build.
    for (var, _) in env::vars() {
        if var.starts_with("CARGO_PROFILE_") {
            cmd.env_remove(var);
        }
    }
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the wasm plugins");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed",
        manifest.display()
    );
}
