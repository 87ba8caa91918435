package registry

// RequestRepair is the admin API's emergency repair, for tests of two
// repairs racing while the first one's restart is under way.
func (r *Replica) RequestRepair(token string) (string, error) { return r.requestRepair(token) }
