// Package writer publishes Envoy ClusterLoadAssignments as files that Envoy's
// file-based EDS (path_config_source) reads: one file per cluster, holding one
// DiscoveryResponse with exactly one resource (docs/design.md, Envoy rules 1-12).
//
// It knows files and Envoy's file rules, nothing about Kubernetes:
//
//   - layout: each cluster's file in a folder of its own,
//     DIR/<FolderName(cluster)>/eds.<ext> (LayoutFolders, the default), since
//     Envoy watches a file's folder and wakes every subscription there for any
//     rename in it; or all in DIR (LayoutFlat, DIR/<FileName(cluster)>). Files
//     of the other layout found at start are counted and left alone;
//   - names: a cluster name maps injectively to a folder (or file) name that
//     stays inside the output folder and fits in 255 bytes (FolderName,
//     FileName); reversibly (FolderCluster, ClusterName), but for names so
//     long they are shortened with a hash, whose cluster the file's content
//     tells;
//   - content: JSON, YAML or binary protobuf chosen by extension, byte for byte
//     deterministic, with version_info a hash of the content, so that
//     restarts and other processes produce the same bytes;
//   - writes: temp file in the hidden folder .tmp/ (watched by no Envoy),
//     fsync, rename over the target (Envoy reloads only on a rename into the
//     watched folder), an fsync of the cluster's folder (flat: one of DIR
//     per batch), files of a batch written in parallel; a cluster folder is
//     made on the cluster's first write, never through a link;
//   - skips: a file is rewritten only when its bytes change, also across
//     restarts (the first write of a cluster compares with the file on disk);
//   - failures: a failed write leaves the old file whole and stays pending
//     for Retry;
//   - the folder: a Watcher reports files of ours that someone else removed
//     or replaced, or whose cluster folder was removed (and the Writer
//     forgets them, so they are written again), with an inotify watch on DIR
//     and one per cluster folder of a file it keeps; a released cluster (no
//     longer published, file emptied) costs no memory and no watch, and
//     Remove deletes its empty file and its folder;
//   - Envoy's inotify limits: ReadInotifyLimits.
//
// Encoding is incremental. The caller (render) reuses the same immutable
// endpoint values for endpoints that did not change, so the Writer finds
// each one's bytes by identity in the cluster's previous document and
// assembles the new document from them: an event that changes 100 of 10,000
// endpoints encodes 100. In pb a cluster of fewer than 16 endpoints keeps no
// document (two hashes of it only) and is encoded whole each time.
// CLAs and their endpoints must therefore not be mutated after they are handed
// to the Writer.
package writer
