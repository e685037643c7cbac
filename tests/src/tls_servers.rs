//! Database servers started by the test itself. The machine's PostgreSQL
//! and MariaDB (which CI uses as they are) may run without TLS or with a
//! certificate nobody can verify, so the TLS tests need servers whose
//! certificates come from a CA they generated; and they are shared, so a
//! test that stops its database needs one of its own.
//!
//! [`TestPki`] is a private CA and a server certificate it issued for
//! `localhost` only (rcgen), written as PEM files. [`PrivatePostgres`]
//! runs `initdb` and `postgres` (from `/usr/lib/postgresql/*/bin`) in a
//! temp dir on a free port, and can be stopped and started again;
//! [`TlsPostgres`] is one with TLS on and password users, and
//! [`TlsMariadb`] runs `mariadb-install-db` and `mariadbd` the same way.
//! Startup waits are bounded (`STARTUP`); when the value drops the server
//! is asked to stop (SIGINT: PostgreSQL's fast shutdown, mariadbd's clean
//! one), and killed if it is still running after `SHUTDOWN`. Run as root
//! (as on the CI machine), PostgreSQL runs as the `postgres` user and
//! mariadbd with `--user=root`, which they demand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(60);
/// The longest a server may take to stop before it is killed.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// A private CA and a server certificate for `localhost`, as PEM files in
/// a folder of their own (`dir`, the folder a plugin is granted to read
/// the CA file from).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// The CA certificate: the root to trust.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Sluice test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_file = file("ca.pem", &ca.pem());
        let cert_file = file("server.crt", &cert.pem());
        let key_file = file("server.key", &key.serialize_pem());
        TestPki {
            ca_file,
            cert_file,
            key_file,
            dir,
        }
    }

    /// The CA file's path as text (for a config).
    pub fn ca(&self) -> String {
        self.ca_file.display().to_string()
    }

    /// The grant that lets a plugin's TLS use the CA file.
    pub fn grant(&self) -> String {
        format!("dir:{}:ro", self.dir.path().display())
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the tests run as root: `/proc/self` belongs to the effective user.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A server process, killed (and reaped) on drop.
struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    fn spawn(mut command: Command, log: PathBuf) -> ServerProcess {
        // Appended to: a server started again keeps its earlier lines.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        ServerProcess { child, log }
    }

    /// Poll `ready` until it holds, failing after [`STARTUP`] or when the
    /// server exits, with its log.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ready() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{what} exited with {status}: {}", self.log_text());
            }
            assert!(
                start.elapsed() < STARTUP,
                "{what} did not accept connections within {STARTUP:?}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl ServerProcess {
    /// Asks the server to stop (SIGINT: PostgreSQL's fast shutdown,
    /// mariadbd's clean one) and waits up to [`SHUTDOWN`]; kills it after
    /// that. Whether it stopped by itself.
    fn stop(&mut self) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return true;
        }
        let asked = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let start = Instant::now();
        while asked && start.elapsed() < SHUTDOWN {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ServerProcess {
    /// Stop cleanly (so PostgreSQL releases its shared memory), within
    /// [`SHUTDOWN`], else kill.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `command` to completion (bounded by the tool itself), panicking
/// with its output when it fails.
fn run(mut command: Command, what: &str) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed: {text}");
    text
}

/// A PostgreSQL cluster of the test's own: `initdb` into a temp dir, then
/// `postgres` on a free port of 127.0.0.1 (trust for `postgres` over TCP
/// and the Unix socket in the data directory). Unlike the machine's
/// PostgreSQL, which other tests share, it may be stopped
/// ([`PrivatePostgres::stop`], a fast shutdown: every session is ended)
/// and started again on the same port and data
/// ([`PrivatePostgres::start_again`]).
pub struct PrivatePostgres {
    pub port: u16,
    data: PathBuf,
    /// `postgres` options beyond the data directory, port and socket.
    options: Vec<String>,
    // Drops before `dir`: the server stops before its files go.
    process: Option<ServerProcess>,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// A new cluster, running.
    pub fn start() -> PrivatePostgres {
        let mut pg = PrivatePostgres::init(&[]);
        pg.start_again();
        pg
    }

    /// `initdb` with trust authentication, not started yet; `options` are
    /// added to the server's command line at every start.
    fn init(options: &[&str]) -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        chown_to_server_user(dir.path());
        let mut initdb = as_server_user(&postgres_bin().join("initdb"), dir.path());
        initdb.args(["-D", &data.display().to_string()]).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        PrivatePostgres {
            port: free_port(),
            data,
            options: options.iter().map(|o| o.to_string()).collect(),
            process: None,
            dir,
        }
    }

    /// Starts the server (again) on its port and data, waiting until it
    /// answers.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "PostgreSQL is already running");
        chown_to_server_user(self.dir.path());
        let data = self.data.display().to_string();
        let mut command = as_server_user(&postgres_bin().join("postgres"), self.dir.path());
        command
            .args(["-D", &data, "-p", &self.port.to_string(), "-k", &data])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(&self.options);
        let log = self.dir.path().join("server.log");
        let mut process = ServerProcess::spawn(command, log);
        process.wait_until("postgres", || self.psql("postgres", "SELECT 1").is_ok());
        self.process = Some(process);
    }

    /// A fast shutdown (SIGINT: sessions ended, no waiting for clients),
    /// waited for; panics with the server's log if it had to be killed.
    pub fn stop(&mut self) {
        let mut process = self.process.take().expect("PostgreSQL is not running");
        assert!(
            process.stop(),
            "PostgreSQL did not stop within {SHUTDOWN:?}: {}",
            process.log_text()
        );
    }

    /// [`PrivatePostgres::stop`], then [`PrivatePostgres::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL as `postgres` on `db` through the Unix socket; the output,
    /// or the error text.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        psql_socket(&self.data, self.port, db, sql)
    }

    /// The server's log so far (every start's).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// A PostgreSQL server with `ssl=on`, the [`TestPki`] server certificate,
/// and only `hostssl` lines in pg_hba.conf: TCP without TLS is refused.
/// Users: `postgres` (trust), `scram_user` (SCRAM-SHA-256) and `md5_user`
/// (MD5), passwords [`TlsPostgres::SCRAM_PASSWORD`] and
/// [`TlsPostgres::MD5_PASSWORD`]; database `test`. A [`PrivatePostgres`]
/// with TLS.
pub struct TlsPostgres {
    pub port: u16,
    pub pki: TestPki,
    server: PrivatePostgres,
}

impl TlsPostgres {
    pub const SCRAM_PASSWORD: &'static str = "scram-secret-1";
    pub const MD5_PASSWORD: &'static str = "md5-secret-1";

    pub fn start() -> TlsPostgres {
        let pki = TestPki::new();
        let mut server = PrivatePostgres::init(&[
            "-c",
            "ssl=on",
            "-c",
            "ssl_cert_file=server.crt",
            "-c",
            "ssl_key_file=server.key",
            "-c",
            "max_connections=30",
        ]);
        let data = server.data.clone();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n\
             hostssl all scram_user 127.0.0.1/32 scram-sha-256\n\
             hostssl all md5_user 127.0.0.1/32 md5\n",
        )
        .unwrap();
        for (from, to) in [
            (&pki.cert_file, "server.crt"),
            (&pki.key_file, "server.key"),
        ] {
            std::fs::copy(from, data.join(to)).unwrap();
        }
        set_mode(&data.join("server.key"), 0o600);
        server.start_again();
        let setup = format!(
            "CREATE DATABASE test; \
             SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE scram_user LOGIN PASSWORD '{}'; \
             SET password_encryption = 'md5'; \
             CREATE ROLE md5_user LOGIN PASSWORD '{}';",
            Self::SCRAM_PASSWORD,
            Self::MD5_PASSWORD
        );
        for statement in setup.split("; ") {
            server.psql("postgres", statement).unwrap();
        }
        TlsPostgres {
            port: server.port,
            pki,
            server,
        }
    }

    /// Run SQL as `postgres` on database `test` (through the server's Unix
    /// socket, which needs no TLS); the output, or the error text.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.server.psql("test", sql)
    }
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an initdb under /usr/lib/postgresql")
}

/// `program`, run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root), from `cwd`. The process is our own child, so
/// signals reach the server itself.
fn as_server_user(program: &Path, cwd: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    if is_root() {
        command.uid(id_of("-u")).gid(id_of("-g"));
    }
    command.current_dir(cwd);
    command
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn id_of(which: &str) -> u32 {
    let mut id = Command::new("id");
    id.args([which, "postgres"]);
    let text = run(id, "id postgres");
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("`id {which} postgres` printed {text:?}: {e}"))
}

fn chown_to_server_user(dir: &Path) {
    if is_root() {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(dir);
        run(chown, "chown");
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn psql_socket(socket_dir: &Path, port: u16, db: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args(["-h", &socket_dir.display().to_string()])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A MariaDB server with the [`TestPki`] certificate and
/// `require_secure_transport=ON`: TCP without TLS is refused. Users
/// `native_user` (mysql_native_password) and `ed_user` (MariaDB's
/// client_ed25519), both with password [`TlsMariadb::PASSWORD`], and
/// `root` over the Unix socket; database `test`.
pub struct TlsMariadb {
    pub port: u16,
    pub pki: TestPki,
    socket: PathBuf,
    _process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl TlsMariadb {
    pub const PASSWORD: &'static str = "native-secret-1";

    pub fn start() -> TlsMariadb {
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        let port = free_port();
        let user: &[&str] = if is_root() { &["--user=root"] } else { &[] };
        install_mariadb(&data, user);
        let mut command = Command::new("mariadbd");
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mariadbd.pid").display()
            ))
            .args(user)
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args([
                "--require-secure-transport=ON",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--ssl-ca={}", pki.ca_file.display()))
            .arg(format!("--ssl-cert={}", pki.cert_file.display()))
            .arg(format!("--ssl-key={}", pki.key_file.display()));
        let mut process = ServerProcess::spawn(command, dir.path().join("mariadbd.log"));
        process.wait_until("mariadbd", || mariadb_socket(&socket, "SELECT 1").is_ok());
        let setup = [
            "CREATE DATABASE test CHARACTER SET utf8mb4".to_string(),
            format!(
                "CREATE USER native_user@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{}')",
                Self::PASSWORD
            ),
            "GRANT ALL ON test.* TO native_user@'%'".to_string(),
            "INSTALL SONAME 'auth_ed25519'".to_string(),
            format!(
                "CREATE USER ed_user@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{}')",
                Self::PASSWORD
            ),
            "GRANT ALL ON test.* TO ed_user@'%'".to_string(),
        ];
        for statement in setup {
            mariadb_socket(&socket, &statement).unwrap();
        }
        TlsMariadb {
            port,
            pki,
            socket,
            _process: process,
            _dir: dir,
        }
    }

    /// Run SQL as root on database `test` (through the Unix socket).
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        mariadb_socket(&self.socket, &format!("USE test; {sql}"))
    }
}

/// `mariadb-install-db` into `data`. Its bootstrap failed once in about
/// ten runs on a loaded two-core machine, saying only "Installation of
/// system tables failed" (not reproduced since): a second attempt in a
/// fresh folder is made, and a second failure panics with both outputs.
fn install_mariadb(data: &Path, user: &[&str]) {
    let attempt = || {
        let _ = std::fs::remove_dir_all(data);
        let output = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(user)
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("mariadb-install-db: {e}"));
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    if let Err(first) = attempt() {
        if let Err(second) = attempt() {
            panic!("mariadb-install-db failed twice:\n{first}\n---\n{second}");
        }
    }
}

fn mariadb_socket(socket: &Path, sql: &str) -> Result<String, String> {
    let output = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-u", "root", "--connect-timeout=5", "-N", "-B", "-e", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("mariadb: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
