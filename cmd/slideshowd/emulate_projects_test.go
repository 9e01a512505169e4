package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestEmulateProjectNames: with -projects the projects are project1..N
// whatever the number of keys; without it each key is a project named as
// the key. -keys 2 -projects 2 had named them key1, key2 (so -no-quota
// project1:image was "no such project") while -keys 3 -projects 2 named
// them project1, project2 (newcomer9 N9-7).
func TestEmulateProjectNames(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // key:project, ...
	}{
		{[]string{"-keys", "2", "-projects", "2", "-no-quota", "project1:image"}, "key1:project1,key2:project2"},
		{[]string{"-keys", "3", "-projects", "2"}, "key1:project1,key2:project2,key3:project1"},
		{[]string{"-keys", "2", "-projects", "5"}, "key1:project1,key2:project2"},
		{[]string{"-keys", "2", "-no-quota", "key1:image"}, "key1:key1,key2:key2"},
	} {
		var f emulateFlags
		fs := flag.NewFlagSet("emulate", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.register(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.emulatorConfig(nil)
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		var got []string
		for _, k := range cfg.Keys {
			got = append(got, k.Name+":"+k.Project)
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("%v: %s, want %s", tt.args, strings.Join(got, ","), tt.want)
		}
	}
}
