package main

import "testing"

func TestRemapPreservesOffsets(t *testing.T) {
	r, err := parseRemap("10.42.0.0/16=10.201.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := r.apply("10.42.3.7"); !ok || got != "10.201.3.7" {
		t.Fatalf("apply: %s %v", got, ok)
	}
	if got, ok := r.reverse().apply("10.201.3.7"); !ok || got != "10.42.3.7" {
		t.Fatalf("reverse: %s %v", got, ok)
	}
	if _, ok := r.apply("10.43.0.1"); ok {
		t.Fatal("address outside the CIDR translated")
	}
	var none *cidrRemap
	if got, ok := none.apply("10.42.0.1"); ok || got != "10.42.0.1" {
		t.Fatal("nil remap must be the identity")
	}
	if _, err := parseRemap("10.42.0.0/16=10.201.0.0/24"); err == nil {
		t.Fatal("different prefix lengths accepted")
	}
}
