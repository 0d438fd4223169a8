// Package render turns the EndpointSlices of one Service into Envoy
// ClusterLoadAssignments, one per Service port, following the contract in
// docs/design.md: endpoint health from the slice conditions, one endpoint per
// ip:port (the healthiest wins) and one per dual-stack Pod (its two
// addresses paired, see Family), weighted localities from zones (and Nodes),
// priorities by topology mode, Service annotations, everything sorted so that
// the same endpoints give the same CLA whatever the slice or event order.
//
// render does no I/O and reads no clock. A Renderer keeps, per slice version,
// the hosts it made (see Host), so re-rendering a Service after one slice
// changed converts only that slice; the output is the same as a fresh render.
package render
