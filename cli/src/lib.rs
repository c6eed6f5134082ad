//! regionsync-cli: the `regionsync` binary (docs/protocol.md §6) and what
//! only it needs. [`commands`] holds one module per subcommand, each a
//! struct of its flags with a `run()`; [`bench`] the speed figures of
//! `regionsync bench`; [`tools`] the demos and the policy author's tools;
//! [`allocator`] the binary's allocator settings. Nodes themselves are the
//! `regionsync` library; what drives them from outside (the load
//! generator, the admin client, the test cluster) is `regionsync-harness`.

pub mod allocator;
pub mod bench;
pub mod commands;
pub mod tools;
