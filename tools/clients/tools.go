// Package clients pins the registry clients that the client matrix
// (clients/) runs against a replica, in a module of its own so that their
// dependencies stay out of dtr's. The matrix builds each one from here with
// `go build -o <cache>/bin/<name> <package>` and keeps the binaries between
// runs.
package clients
