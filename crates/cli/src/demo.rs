//! `sluice demo`: the classic reverse-ETL story end to end on embedded
//! defaults. It writes a customers.csv, starts the Salesforce emulator
//! in-process, syncs the customers into it through the sandboxed `files`
//! and `salesforce` plugins, changes a few rows, syncs again, and shows that
//! only those were sent. The project folder stays for the user to explore.

use super::sync::{load_project, print_report, run_one};
use anyhow::{Context, Result};
use clap::Args;
use sluice_emulators::{
    EmulatorConfig, FieldSpec, FieldType, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
};
use sluice_runtime::sandbox::policy::Grants;
use sluice_runtime::{Runtime, RuntimeOptions};
use sluice_state::{SqliteStore, StateStore};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo project.
    #[arg(long, default_value = "sluice-demo")]
    pub dir: PathBuf,
    /// Port for the in-process Salesforce emulator (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Write into --dir even if it holds a project the demo did not write
    /// (its sluice.yaml, data/customers.csv and .sluice state are replaced).
    #[arg(long)]
    pub force: bool,
    /// Run the demo as a service, to see the web console on a real run:
    /// `sluice serve` and a worker start in this process over the
    /// PostgreSQL database at this URL (created if missing), a tenant
    /// `demo` uploads the project (two customers' emails are invalid, so
    /// Salesforce rejects them) and runs it; the run page's address is
    /// printed and the tenant's token written to DIR/.sluice/demo.token.
    /// Serves until Ctrl-C.
    #[arg(long, value_name = "POSTGRES_URL")]
    pub serve: Option<String>,
    /// With --serve: the address the server listens on (port 0: any).
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        value_name = "ADDR",
        requires = "serve"
    )]
    pub listen: String,
}

/// The first line of every project the demo writes; a folder whose
/// sluice.yaml starts with it is the demo's own and may be reset.
const MARKER: &str = "# Written by `sluice demo`.";

const CUSTOMERS: usize = 250;
pub const SYNC: &str = "customers_to_salesforce";

struct Customer {
    id: usize,
    first: &'static str,
    last: &'static str,
    ltv: f64,
}

fn customers(changed: &[usize]) -> Vec<Customer> {
    const FIRST: [&str; 8] = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
    ];
    const LAST: [&str; 8] = [
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
    ];
    (1..=CUSTOMERS)
        .map(|id| {
            let base = ((id * 7919) % 5000) as f64 + 0.5;
            let ltv = if changed.contains(&id) {
                base * 2.0
            } else {
                base
            };
            Customer {
                id,
                first: FIRST[id % 8],
                last: LAST[(id / 8) % 8],
                ltv,
            }
        })
        .collect()
}

/// The customers as CSV; those in `invalid` get an email Salesforce
/// refuses (no `@`).
fn write_csv(dir: &Path, changed: &[usize], invalid: &[usize]) -> Result<()> {
    let mut csv = String::from("customer_id,email,first_name,last_name,lifetime_value\n");
    for c in customers(changed) {
        let at = if invalid.contains(&c.id) { " at " } else { "@" };
        csv.push_str(&format!(
            "{},{}.{}{}{at}example.com,{},{},{:.2}\n",
            c.id,
            c.first.to_lowercase(),
            c.last.to_lowercase(),
            c.id,
            c.first,
            c.last,
            c.ltv
        ));
    }
    std::fs::write(dir.join("data/customers.csv"), csv).context("writing data/customers.csv")
}

fn write_project(dir: &Path, emulator_url: &str) -> Result<()> {
    let grant = Grants::pattern_for_url(emulator_url).context("emulator URL")?;
    let yaml = format!(
        r#"{MARKER} The Salesforce emulator it points at ran inside
# the demo; to keep going, start one with
#   sluice emulator salesforce --port 8080
# set login_url and the grant below to http://127.0.0.1:8080, then
#   sluice run {SYNC}

sources:
  files:
    plugin: files                  # built-in: CSV, JSON Lines, Parquet
    config:
      path: /data
      columns: {{ customer_id: integer, lifetime_value: decimal }}
    grants: ["dir:data:/data"]     # read-only, mounted at /data

destinations:
  salesforce:
    plugin: salesforce
    config:
      login_url: "{emulator_url}"
      api_hosts: []                # the emulator answers API calls at login_url
      auth:
        flow: client_credentials
        client_id: {DEFAULT_CLIENT_ID}
        client_secret: {DEFAULT_CLIENT_SECRET}
      objects: [Contact]
    grants: ["{grant}"]            # the only host the plugin may reach

models:
  customers:
    source: files
    object: customers.csv
    primary_key: customer_id

syncs:
  {SYNC}:
    model: customers
    destination: salesforce
    object: Contact
    mode: upsert
    identifier: External_Id__c
    batch_size: 200
    mappings:
      - {{ from: customer_id, to: External_Id__c, type: string }}
      - {{ from: email, to: Email }}
      - {{ from: first_name, to: FirstName }}
      - {{ from: last_name, to: LastName }}
      - {{ from: lifetime_value, to: Lifetime_Value__c, type: number }}
"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).context("writing sluice.yaml")
}

/// Refuse to overwrite a project the demo did not write, unless forced.
fn check_dir_is_ours(dir: &Path, force: bool) -> Result<()> {
    let yaml = dir.join("sluice.yaml");
    let ours = match std::fs::read_to_string(&yaml) {
        Ok(text) => text.starts_with(MARKER),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => !dir.join(".sluice").exists(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", yaml.display())),
    };
    if ours || force {
        return Ok(());
    }
    anyhow::bail!(
        "{} holds a project the demo did not write; the demo would replace its sluice.yaml, \
         data/customers.csv and state (.sluice). Choose another --dir, or pass --force to replace them",
        dir.display()
    )
}

pub async fn run(args: DemoArgs) -> Result<()> {
    if let Some(url) = &args.serve {
        return super::demo_serve::run(&args, url).await;
    }
    let dir = &args.dir;
    let emulator = start_emulator(args.port).await?;
    println!("1. Salesforce emulator running at {}", emulator.base_url());
    write_demo_project(&args, &emulator.base_url(), &[])?;
    println!(
        "2. Wrote {0}/data/customers.csv ({CUSTOMERS} customers) and {0}/sluice.yaml",
        dir.display()
    );

    let project = load_project(dir)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let store: Mutex<Box<dyn StateStore>> = Mutex::new(Box::new(SqliteStore::open_project(dir)?));

    println!("3. First run: every customer is new.");
    let first = run_one(&project, &runtime, &store, SYNC, Default::default(), false).await?;
    print_report(&first, &store)?;
    show_landed(&emulator, 3);

    let changed = [7, 42, 199];
    write_csv(dir, &changed, &[])?;
    println!("4. Changed the lifetime value of customers {changed:?}; running again.");
    let second = run_one(&project, &runtime, &store, SYNC, Default::default(), false).await?;
    print_report(&second, &store)?;
    println!(
        "   Only {} row(s) were sent; {} unchanged rows were skipped.",
        second.counts.sent, second.counts.unchanged
    );

    println!(
        "5. The project is in {}/: read sluice.yaml, then try",
        dir.display()
    );
    println!(
        "     sluice runs -C {0}        sluice runs show 2 -C {0}",
        dir.display()
    );
    println!("     sluice plugin inspect salesforce");
    emulator.shutdown().await?;
    if first.error.is_some() || second.error.is_some() {
        anyhow::bail!("the demo sync failed");
    }
    Ok(())
}

/// The Salesforce emulator the demo syncs into, with the demo's custom
/// field.
pub(crate) async fn start_emulator(port: u16) -> Result<sluice_emulators::RunningEmulator> {
    let emulator = sluice_emulators::start_salesforce(
        ([127, 0, 0, 1], port).into(),
        EmulatorConfig::default(),
    )
    .await?;
    emulator.handle().declare_field(
        "Contact",
        FieldSpec::new("Lifetime_Value__c", FieldType::Currency).label("Lifetime Value"),
    )?;
    Ok(emulator)
}

/// Writes the demo project into `dir` (refusing a project the demo did not
/// write, unless forced), forgetting its earlier runs: its sluice.yaml
/// pointing at `emulator_url`, and the customers, `invalid` ones with a
/// bad email.
pub(crate) fn write_demo_project(
    args: &DemoArgs,
    emulator_url: &str,
    invalid: &[usize],
) -> Result<()> {
    let dir = &args.dir;
    check_dir_is_ours(dir, args.force)?;
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.display()))?;
    // A demo starts from nothing: forget this demo's earlier runs.
    match std::fs::remove_dir_all(dir.join(".sluice")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("resetting {}/.sluice", dir.display()))
        }
        _ => {}
    }
    write_csv(dir, &[], invalid)?;
    write_project(dir, emulator_url)
}

fn show_landed(emulator: &sluice_emulators::RunningEmulator, n: usize) {
    let records = emulator.handle().records("Contact");
    println!(
        "   {} Contact records in Salesforce now, for example:",
        records.len()
    );
    for r in records.iter().take(n) {
        println!(
            "     {} {} <{}>  External_Id__c={}  Lifetime_Value__c={}",
            r["FirstName"].as_str().unwrap_or(""),
            r["LastName"].as_str().unwrap_or(""),
            r["Email"].as_str().unwrap_or(""),
            r["External_Id__c"],
            r["Lifetime_Value__c"]
        );
    }
}
