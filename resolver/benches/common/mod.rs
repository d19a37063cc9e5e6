//! What the resolver's benches share.

/// CPU seconds of this process's threads whose name starts with `prefix`.
pub fn cpu_of(prefix: &str) -> f64 {
    let mut ticks = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        ticks += f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    }
    ticks / 100.0
}
