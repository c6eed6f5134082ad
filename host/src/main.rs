//! The `regionsync` command line.
fn main() {
    eprintln!("regionsync: subcommands arrive with the leader and follower");
    std::process::exit(2);
}
