//! What the benchmarks print about the machine they ran on.

/// CPU, cores, memory, OS and build profile, for the results' header.
pub fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = field(&meminfo, "MemTotal")
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os = field(&os.replace('=', ":"), "PRETTY_NAME")
        .trim_matches('"')
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("machine");
    println!(
        "  cpu: {} (family {}, model {}, stepping {})",
        field(&cpuinfo, "model name"),
        field(&cpuinfo, "cpu family"),
        field(&cpuinfo, "model"),
        field(&cpuinfo, "stepping")
    );
    println!(
        "  cores: {} logical (available_parallelism {})",
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("  memory: {:.1} GiB", mem_kib as f64 / (1024.0 * 1024.0));
    println!("  os: {os}, kernel {}", kernel.trim());
    println!(
        "  build: {} profile",
        if cfg!(debug_assertions) {
            "debug (numbers are meaningless)"
        } else {
            "optimised"
        }
    );
    println!();
}
