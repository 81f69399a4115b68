//! Build checks for the nginx glue.
//!
//! `nginx-sys` exports what the nginx it was generated from was configured with
//! (`DEP_NGINX_FEATURES`, `DEP_NGINX_VERSION_NUMBER`). vid needs the stream module and a
//! `--with-compat` build to be loadable with `load_module`; fail early with a clear
//! message instead of with missing bindings.

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if std::env::var_os("CARGO_FEATURE_NGINX").is_none() {
        return; // the media core alone: no nginx involved
    }
    if let Ok(features) = std::env::var("DEP_NGINX_FEATURES") {
        let have: Vec<&str> = features.split(',').map(str::trim).collect();
        for (feature, flag) in [("stream", "--with-stream"), ("compat", "--with-compat")] {
            if !have.contains(&feature) {
                panic!("vid needs nginx configured with {flag} (NGINX_BUILD_DIR points at a build without it)");
            }
        }
    }
    if let Ok(v) = std::env::var("DEP_NGINX_VERSION_NUMBER") {
        if v.parse::<u64>().is_ok_and(|n| n < 1_025_000) {
            println!("cargo::warning=vid is developed against nginx 1.28; this nginx is {v}");
        }
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        // nginx symbols are resolved when nginx loads the module.
        println!("cargo::rustc-link-arg=-undefined");
        println!("cargo::rustc-link-arg=dynamic_lookup");
    }
}
