//go:build !linux

package store

// fileID identifies the file at path; "" (unknown) off Linux, where the
// kernel's boot id is not read: every life record is then taken as one
// written to another file (see SharedLife.Copy).
func fileID(string) string { return "" }
