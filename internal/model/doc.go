// Package model holds Gantry's domain types: the NVCF-shaped resources that the
// API accepts and returns, that the store persists, and that the control plane
// hands to agents. It has no dependencies beyond the standard library so that
// every component, the agent included, can share it without pulling in etcd.
package model
