// Package contract is what the two binaries agree on: the installer (dtr)
// writes a replica's service and talks to its admin API, the replica
// (dtr-registry) reads that service's environment and serves that API.
// Both import this package, as moby's client and daemon share api/types; it
// imports only the standard library, so neither binary pulls the other's
// dependencies through it.
//
// What is here: the replica's configuration with its environment encoding
// (Config.Env, ParseEnv), the paths and ports inside the replica's
// container, the names derived from a replica ID (service, peer URL, TLS
// server name), the admin API's request and response types, the restore
// storage values and the backup's record paths. A setting added to the
// replica is a field of Config and a line of its table, and the compiler
// then finds every writer and reader. See docs/architecture.md §3.
package contract
