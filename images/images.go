// Package images names the images this version of dtr deploys and says where
// their version comes from. The version lives in one place, images/VERSION
// (the repository's VERSION is a link to it), embedded at build time.
package images

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version is this build's dtr version, e.g. "0.1.0".
var Version = strings.TrimSpace(versionFile)

// Repository prefixes the image names, e.g. "registry.example.com/ops/" for
// operators who mirror the images; empty for the plain local names. It can be
// set at build time with -ldflags "-X github.com/dtr-registry/dtr/images.Repository=…".
var Repository = ""

// Installer is the reference of the installer image (`dtr`) of this version.
func Installer() string { return Repository + "dtr:" + Version }

// Registry is the reference of the replica image (`dtr-registry`) of this version.
func Registry() string { return Repository + "dtr-registry:" + Version }

// All lists every image this version deploys, installer first: what an offline
// cluster needs loaded on each node (`docker save … | docker load`).
func All() []string { return []string{Installer(), Registry()} }

// MinorVersion is "major.minor" of v ("0.1" for "0.1.3"): backups restore only
// within one minor version.
func MinorVersion(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}
