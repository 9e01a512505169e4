//go:build !unix

package store

// fileID identifies the file at path; "" (unknown) where device and inode
// numbers are not read (not a Unix system): every life record is then
// taken as one written to another file (see SharedLife.Copy).
func fileID(string) string { return "" }
