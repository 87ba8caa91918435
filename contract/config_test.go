package contract

import (
	"reflect"
	"strings"
	"testing"
)

// TestEnvRoundTrip: every field of Config survives Env then ParseEnv, so a
// setting the installer writes is the setting the replica reads.
func TestEnvRoundTrip(t *testing.T) {
	c := Config{}
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("value-of-" + v.Type().Field(i).Name)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int:
			f.SetInt(int64(1000 + i))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a.example", "10.0.0.1"}))
		default:
			t.Fatalf("field %s of kind %s has no env encoding", v.Type().Field(i).Name, f.Kind())
		}
	}
	got, err := ParseEnv(c.Env())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip lost settings:\n got %+v\nwant %+v", got, c)
	}
	if n := len(EnvNames()); n != v.NumField() {
		t.Errorf("%d variables for %d fields: a field has no variable, or two share one", n, v.NumField())
	}
}

func TestEnvLeavesOutUnset(t *testing.T) {
	env := Config{ReplicaID: "0123456789ab", Join: false}.Env()
	if len(env) != 1 || env[0] != "DTR_REPLICA_ID=0123456789ab" {
		t.Errorf("Env of a config with only an ID: %v", env)
	}
}

func TestParseEnvErrors(t *testing.T) {
	for _, bad := range []string{"DTR_JOIN=maybe", "DTR_PUBLIC_HTTPS_PORT=https"} {
		if _, err := ParseEnv([]string{bad}); err == nil || !strings.Contains(err.Error(), strings.Split(bad, "=")[0]) {
			t.Errorf("ParseEnv(%s): %v; want an error naming the variable", bad, err)
		}
	}
	c, err := ParseEnv([]string{"PATH=/bin", "DTR_UNKNOWN=1", "DTR_HOSTNAMES=a, b,,c", "DTR_JOIN=1"})
	if err != nil || !c.Join || !reflect.DeepEqual(c.Hostnames, []string{"a", "b", "c"}) {
		t.Errorf("ParseEnv: %+v %v", c, err)
	}
}

func TestNames(t *testing.T) {
	if PeerURL("0123456789ab") != "https://dtr-registry-0123456789ab:12380" {
		t.Error(PeerURL("0123456789ab"))
	}
	if !ValidReplicaID("0123456789ab") || ValidReplicaID("0123456789AB") || ValidReplicaID("0123") {
		t.Error("ValidReplicaID")
	}
}
