package meta

// RepositoryOfKey is the repository ("namespace/name") whose record a key
// is, so that a backup knows the repositories at the revision it dumps.
func RepositoryOfKey(k string) (string, bool) {
	parts, ok := keyParts(k, dir("repos"), 2)
	if !ok {
		return "", false
	}
	return parts[0] + "/" + parts[1], true
}
