// Package conformance pins the OCI distribution-spec conformance suite in its
// own module, so that the suite's dependencies stay out of dtr's. The test
// TestConformance in registry/ builds it from here.
package conformance
