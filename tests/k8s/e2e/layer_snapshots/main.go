// layer-snapshots: the containerd side of tests/k8s/e2e/layer_cache.py. ctr cannot do it:
// each ctr command holds its objects under a lease of its own that ends with it, so a
// snapshot prepared by one ctr call is gone before another can commit it.
//
//	layer-snapshots <socket> seed <cache dir> <chain id>...
//	    bottom up, makes each layer the cache holds (<cache dir>/<hex>/fs, complete) a
//	    committed snapshot named by its chain ID, its files hard links into the cache;
//	    stops at the first layer not cached. Prints how many it made.
//	layer-snapshots <socket> dirs <chain id>
//	    the directories holding the files of that snapshot and each of its parents, top
//	    first, one a line.
//
// Namespace k8s.io (the CRI's), snapshotter overlayfs. Everything made is under a lease
// while this runs; a seeded snapshot keeps a containerd.io/gc.root label, so containerd's
// garbage collector leaves it until the image import refers to it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	namespace   = "k8s.io"
	snapshotter = "overlayfs"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "layer-snapshots:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 3 || (args[1] == "seed" && len(args) < 4) {
		return fmt.Errorf("usage: layer-snapshots <socket> seed <cache dir> <chain id>... | dirs <chain id>")
	}
	conn, err := grpc.NewClient("unix://"+args[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", namespace)
	leases := leasesapi.NewLeasesClient(conn)
	lease := fmt.Sprintf("zyra-layer-cache-%d-%d", os.Getpid(), time.Now().UnixNano())
	_, err = leases.Create(ctx, &leasesapi.CreateRequest{ID: lease, Labels: map[string]string{
		"containerd.io/gc.expire": time.Now().Add(time.Hour).Format(time.RFC3339),
	}})
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer leases.Delete(ctx, &leasesapi.DeleteRequest{ID: lease})
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-lease", lease)
	sn := snapshotsapi.NewSnapshotsClient(conn)
	switch args[1] {
	case "seed":
		n, err := seed(ctx, sn, args[2], args[3:])
		fmt.Println(n)
		return err
	case "dirs":
		dirs, err := layerDirs(ctx, sn, args[2])
		for _, d := range dirs {
			fmt.Println(d)
		}
		return err
	}
	return fmt.Errorf("unknown command %q", args[1])
}

func exists(ctx context.Context, sn snapshotsapi.SnapshotsClient, name string) (bool, error) {
	_, err := sn.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: snapshotter, Key: name})
	if status.Code(err) == codes.NotFound {
		return false, nil
	}
	return err == nil, err
}

func seed(ctx context.Context, sn snapshotsapi.SnapshotsClient, cache string, chains []string) (int, error) {
	made, parent := 0, ""
	for _, chain := range chains {
		found, err := exists(ctx, sn, chain)
		if err != nil {
			return made, err
		}
		if !found {
			entry := filepath.Join(cache, strings.TrimPrefix(chain, "sha256:"))
			if _, err := os.Stat(filepath.Join(entry, "complete")); err != nil {
				return made, nil
			}
			key := "zyra-seed-" + chain
			prepared, err := sn.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
				Snapshotter: snapshotter, Key: key, Parent: parent})
			if err != nil {
				return made, fmt.Errorf("prepare %s: %w", chain, err)
			}
			upper, err := upperDir(prepared.Mounts)
			if err != nil {
				return made, err
			}
			cp := exec.Command("cp", "-a", "--link", filepath.Join(entry, "fs")+"/.", upper)
			if out, err := cp.CombinedOutput(); err != nil {
				sn.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: snapshotter, Key: key})
				return made, fmt.Errorf("cp %s: %v: %s", entry, err, out)
			}
			_, err = sn.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{
				Snapshotter: snapshotter, Name: chain, Key: key,
				Labels: map[string]string{"containerd.io/gc.root": "zyra-layer-cache"}})
			if err != nil {
				return made, fmt.Errorf("commit %s: %w", chain, err)
			}
			made++
		}
		parent = chain
	}
	return made, nil
}

func option(m *types.Mount, name string) string {
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, name+"="); ok {
			return v
		}
	}
	return ""
}

func upperDir(mounts []*types.Mount) (string, error) {
	if len(mounts) != 1 {
		return "", fmt.Errorf("%d mounts", len(mounts))
	}
	if mounts[0].Type == "bind" { // no parent: the snapshot's own directory
		return mounts[0].Source, nil
	}
	if upper := option(mounts[0], "upperdir"); upper != "" {
		return upper, nil
	}
	return "", fmt.Errorf("no upperdir in %v", mounts[0].Options)
}

func layerDirs(ctx context.Context, sn snapshotsapi.SnapshotsClient, chain string) ([]string, error) {
	key := fmt.Sprintf("zyra-view-%d", time.Now().UnixNano())
	view, err := sn.View(ctx, &snapshotsapi.ViewSnapshotRequest{Snapshotter: snapshotter, Key: key, Parent: chain})
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", chain, err)
	}
	defer sn.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: snapshotter, Key: key})
	if len(view.Mounts) != 1 {
		return nil, fmt.Errorf("%d mounts", len(view.Mounts))
	}
	if view.Mounts[0].Type == "bind" { // a one-layer chain: that layer, read-only
		return []string{view.Mounts[0].Source}, nil
	}
	lower := option(view.Mounts[0], "lowerdir")
	if lower == "" {
		return nil, fmt.Errorf("no lowerdir in %v", view.Mounts[0].Options)
	}
	return strings.Split(lower, ":"), nil
}
