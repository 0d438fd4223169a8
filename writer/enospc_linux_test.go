package writer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Real ENOSPC, not an injected one: the writer over a file system that is
// full. Both tests need root (they mount file systems) and skip without it.
//
// TestWriteENOSPCOnTmpfs: a small tmpfs, where the space is taken by write(2)
// itself: the temp file's write stops partway with ENOSPC.
// TestWriteENOSPCAtFsync: ext4 on a loop device over a sparse image on a full
// tmpfs (a thin-provisioned disk): write(2) succeeds into the page cache and
// the fsync fails with ENOSPC when the data reaches the device.
//
// In both: the error is returned and logged naming the path and "no space
// left on device"; the old file of that cluster is byte-identical and the
// same file, the other cluster's file untouched; no temp file is left in
// .tmp (the space it took is free again, so failures do not pile up while
// the volume stays full); a retry while still full fails the same way;
// once space is freed, the retry writes the new file.

// mountTmpfs mounts a tmpfs of size bytes on a fresh folder, unmounted at
// cleanup. It skips the test when not root or when the mount fails (a
// container without CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: not root, and a real ENOSPC needs a small tmpfs mounted (run the tests as root to cover it)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Skipf("cannot mount a tmpfs on %s (needs CAP_SYS_ADMIN): %v", dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// unmount unmounts dir, lazily if it is busy, before t.TempDir's cleanup
// removes the folder (cleanups run last registered first).
func unmount(t *testing.T, dir string) {
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
		unix.Unmount(dir, unix.MNT_DETACH)
	}
}

// freeBytes is the space left on the file system of path.
func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillTo writes the file ballast until the file system of ballast has
// leave bytes free (leave a multiple of the page size), or is full with
// leave 0.
func fillTo(t *testing.T, ballast string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(ballast, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		n := freeBytes(t, ballast) - leave
		if n <= 0 {
			break
		}
		_, err := f.Write(chunk[:min(n, int64(len(chunk)))])
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := freeBytes(t, ballast); got != leave {
		t.Fatalf("filled to %d bytes free, want %d", got, leave)
	}
}

// fileFacts is what an untouched file keeps: its bytes and which file it is.
type fileFacts struct {
	data []byte
	id   fileID
}

func factsOf(t *testing.T, path string) fileFacts {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileFacts{data, idOf(t, path)}
}

func checkUntouched(t *testing.T, what, path string, want fileFacts) {
	t.Helper()
	got := factsOf(t, path)
	if !bytes.Equal(got.data, want.data) {
		t.Fatalf("%s %s changed after a failed write:\n%s", what, path, got.data)
	}
	if got.id != want.id {
		t.Fatalf("%s %s was replaced (inode or mtime changed) by a failed write", what, path)
	}
}

// checkENOSPC asserts that res is the failure of the cluster at path for
// lack of space, returned and logged at Error with the path and reason.
func checkENOSPC(t *testing.T, res Result, path, step string, logs fmt.Stringer) {
	t.Helper()
	checkResult(t, res, 0, 0, 1)
	t.Logf("%s", res.Err)
	if !errors.Is(res.Err, syscall.ENOSPC) {
		t.Fatalf("%s: error %v is not ENOSPC", step, res.Err)
	}
	for _, want := range []string{path, step, "no space left on device"} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("error %q does not say %q", res.Err, want)
		}
	}
	var logged bool
	for _, line := range strings.Split(logs.String(), "\n") {
		logged = logged || strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, `"path":"`+path+`"`) &&
			strings.Contains(line, "no space left on device")
	}
	if !logged {
		t.Errorf("no Error line naming %s and ENOSPC:\n%s", path, logs)
	}
}

// enospcCase runs the scenario common to both tests on a Writer over out,
// whose space (the file system at the path space) full() takes and free()
// gives back; step is the step of writeAtomic that must fail ("write",
// "fsync").
func enospcCase(t *testing.T, out, space string, f Format, step string, full, free func()) {
	w, logs := newWriter(t, out, f)
	const name, other, fresh = "default/web/http", "default/db/tcp", "default/new/http"
	path, _ := w.Path(name)
	otherPath, _ := w.Path(other)
	freshPath, _ := w.Path(fresh)
	checkResult(t, w.Write(t.Context(), append(one(name, 80), one(other, 5432)...)), 2, 0, 0)
	old, untouched := factsOf(t, path), factsOf(t, otherPath)

	big := benchCLA(name, 3000) // ~0.5 MB, more than is left
	full()
	before := freeBytes(t, space)
	if data, err := w.Encode(big); err != nil {
		t.Fatal(err)
	} else if int64(len(data)) <= 2*before {
		t.Fatalf("the new file (%d bytes) does not overflow the %d bytes left", len(data), before)
	}

	res := w.Write(t.Context(), []Cluster{{Name: name, CLA: big}})
	checkENOSPC(t, res, path, step, logs)
	checkUntouched(t, "the old file", path, old)
	checkUntouched(t, "another cluster's file", otherPath, untouched)
	checkTmpEmpty(t, out)
	if got := freeBytes(t, space); got != before {
		t.Fatalf("%d bytes free after the failed write, %d before: the temp file's space was not given back", got, before)
	}
	if !w.IsPending(name) || w.Pending() != 1 {
		t.Fatalf("pending %v, want only %s", w.PendingClusters(), name)
	}

	// A cluster's first file, in a folder made for it: nothing appears at
	// its path.
	res = w.Write(t.Context(), []Cluster{{Name: fresh, CLA: benchCLA(fresh, 3000)}})
	checkENOSPC(t, res, freshPath, step, logs)
	if _, err := os.Lstat(freshPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after its failed first write: %v, want nothing", freshPath, err)
	}

	// Retried while still full: the same failure, nothing piles up.
	res = w.Retry(t.Context())
	checkResult(t, res, 0, 0, 2)
	if !errors.Is(res.Err, syscall.ENOSPC) {
		t.Fatalf("retry: %v, want ENOSPC", res.Err)
	}
	checkUntouched(t, "the old file", path, old)
	checkTmpEmpty(t, out)
	if got := freeBytes(t, space); got != before {
		t.Fatalf("%d bytes free after a failed retry, %d before", got, before)
	}

	free()
	checkResult(t, w.Retry(t.Context()), 2, 0, 0)
	checkFile(t, path, big)
	checkFile(t, freshPath, benchCLA(fresh, 3000))
	checkUntouched(t, "another cluster's file", otherPath, untouched)
	checkTmpEmpty(t, out)
	if w.Pending() != 0 {
		t.Fatalf("pending %v after a good retry", w.PendingClusters())
	}
}

func TestWriteENOSPCOnTmpfs(t *testing.T) {
	for _, f := range []Format{FormatJSON, FormatPB} {
		t.Run(string(f), func(t *testing.T) {
			mnt := mountTmpfs(t, 2<<20)
			out := filepath.Join(mnt, "out")
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			ballast := filepath.Join(mnt, "ballast")
			// 16 KiB left: the temp file's first writes succeed, then
			// write(2) returns short and the next ENOSPC.
			enospcCase(t, out, mnt, f, "write", func() { fillTo(t, ballast, 16<<10) }, func() {
				if err := os.Remove(ballast); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestWriteENOSPCAtFsync(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("no mkfs.ext4: an ENOSPC at fsync needs ext4 on a thin (sparse) image")
	}
	back := mountTmpfs(t, 16<<20)
	img := filepath.Join(back, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 256<<20); err != nil { // sparse: 256 MiB on a 16 MiB tmpfs
		t.Fatal(err)
	}
	// 4 KiB blocks, a page each: a data block never shares a page of the
	// image with one written before. (The loop driver takes a short write
	// into its backing file for a whole one.) No journal: its blocks
	// would need space too.
	if out, err := exec.CommandContext(t.Context(), mkfs, "-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal",
		"-E", "nodiscard,lazy_itable_init=0", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v\n%s", err, out)
	}
	fs := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "mount", "-o", "loop", img, fs).CombinedOutput(); err != nil {
		t.Skipf("cannot mount an ext4 image through a loop device: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmount(t, fs) })

	out := filepath.Join(fs, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// The inodes the writer's temp files will take, in blocks of the
	// inode table written now: without data, these files back no block a
	// temp file could reuse, and with a full image, an inode written at
	// fsync would fail as well as the data.
	warm := filepath.Join(fs, "warm")
	if err := os.Mkdir(warm, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if err := os.WriteFile(filepath.Join(warm, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	syncFS := func() {
		fd, err := unix.Open(fs, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Syncfs(fd); err != nil {
			t.Fatal(err)
		}
	}
	syncFS()
	if err := os.RemoveAll(warm); err != nil {
		t.Fatal(err)
	}

	ballast := filepath.Join(back, "ballast")
	enospcCase(t, out, back, FormatJSON, "fsync", func() {
		syncFS() // everything so far is on the image: only the new file needs space
		fillTo(t, ballast, 0)
	}, func() {
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
	})
}
