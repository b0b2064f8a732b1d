//! The generated tenant the benchmarks share: 10,000 users, 100 groups, 10 outcalls, 1,000
//! ACL patterns in 10 Call ACLs, and as many call permissions as asked (exact extensions and
//! patterns mixed, held by users, groups and outcalls).

use std::fmt::Write;

pub const USERS: usize = 10_000;
const GROUPS: usize = 100;
const OUTCALLS: usize = 10;
const ACL_PATTERNS: usize = 1_000;
const ACLS: usize = 10;

/// A generated configuration: every object refers to real ones, so it loads through the same
/// validation as a hand-written file.
/// `server` is the file's beginning: `[server]` and whatever else the benchmark needs.
pub fn generate(server: &str, permissions: usize) -> String {
    let mut s = String::from(server);
    s.push_str("[brand]\nname = \"bench\"\n");
    s.push_str("[[tenant]]\nname = \"big\"\ncountry = \"ES\"\nsources = [\"127.0.0.0/8\"]\n");
    for i in 0..ACL_PATTERNS {
        let _ = writeln!(s, "[[tenant.acl_patterns]]\nname = \"p{i}\"");
        let _ = match i % 4 {
            0 => writeln!(s, "regex = '^34{:03}[0-9]+$'", i % 1000),
            1 => writeln!(s, "regex = '^\\+{}9{:02}'", 30 + i % 60, i % 100),
            2 => writeln!(s, "numbers = [\"+349{:08}\"]", i),
            _ => writeln!(s, "regex = '{:04}$'", i),
        };
    }
    for a in 0..ACLS {
        let _ = writeln!(
            s,
            "[[tenant.call_acls]]\nname = \"acl{a}\"\ndefault = \"{}\"\nrules = [",
            if a % 2 == 0 { "allow" } else { "deny" }
        );
        for r in 0..ACL_PATTERNS / ACLS {
            let p = a * (ACL_PATTERNS / ACLS) + r;
            let _ = writeln!(
                s,
                "{{ metric = {r}, pattern = \"p{p}\", action = \"{}\" }},",
                if r % 3 == 0 { "deny" } else { "allow" }
            );
        }
        s.push_str("]\n");
    }
    for u in 0..USERS {
        let _ = writeln!(
            s,
            "[[tenant.users]]\nname = \"u{u}\"\nextension = \"{}\"",
            10_000 + u
        );
        if u % 2 == 0 {
            let _ = writeln!(s, "call_acl = \"acl{}\"", u % ACLS);
        }
    }
    for g in 0..GROUPS {
        let _ = write!(s, "[[tenant.groups]]\nname = \"g{g}\"\nmembers = [");
        for m in (g..USERS).step_by(GROUPS) {
            let _ = write!(s, "\"u{m}\",");
        }
        s.push_str("]\n");
    }
    for o in 0..OUTCALLS {
        let _ = writeln!(
            s,
            "[[tenant.outcalls]]\nname = \"o{o}\"\npatterns = [\"_00{}X.\", \"_{}XXXXXXXX\"]",
            30 + o,
            o
        );
    }
    for p in 0..permissions {
        let ext = match p % 5 {
            0 => format!("\"6{:08}\"", p),
            1 => format!("\"9{:08}\"", p * 7),
            2 => format!("\"_00{}X.\"", 30 + p % 60),
            3 => format!("\"_9{:03}XXXXX\"", p % 1000),
            _ => format!("\"_6{:02}X.\", \"1{:04}\"", p % 100, p % 10_000),
        };
        let holders = match p % 10 {
            0 => format!("groups = [\"g{}\"]", p % GROUPS),
            1 => format!("outcalls = [\"o{}\"]", p % OUTCALLS),
            _ => format!("users = [\"u{}\", \"u{}\"]", p % USERS, (p * 7 + 3) % USERS),
        };
        let mode = if p % 3 == 0 { "allow" } else { "deny" };
        let pw = if p % 7 == 0 {
            "password = \"1234\"\n"
        } else {
            ""
        };
        let _ = writeln!(s, "[[tenant.call_permissions]]\nname = \"perm{p}\"\nmode = \"{mode}\"\nextensions = [{ext}]\n{holders}\n{pw}");
    }
    s
}
