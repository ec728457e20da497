package main

import (
	"context"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// namespaceOffloadingGVR is Liqo's NamespaceOffloading (offloading.liqo.io/v1alpha1).
var namespaceOffloadingGVR = schema.GroupVersionResource{Group: "offloading.liqo.io", Version: "v1alpha1", Resource: "namespaceoffloadings"}

// offloadingTracker knows which home namespaces are offloaded to this provider and their remote names.
//
// A namespace is offloaded here when its NamespaceOffloading lists this provider's cluster ID
// in status.remoteNamespacesConditions with a Ready=True condition (written by the kit's
// offloading controller once the remote namespace and the tenant's RoleBinding exist).
type offloadingTracker struct {
	dyn       dynamic.Interface
	clusterID string
	homeID    string
	resync    time.Duration

	mu      sync.RWMutex
	mapping map[string]string
	synced  chan struct{}
	once    sync.Once
	onNew   []func(home string)
}

// OnNewNamespace registers f to be called (outside the lock) for every newly offloaded namespace.
func (t *offloadingTracker) OnNewNamespace(f func(home string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.onNew = append(t.onNew, f)
}

func newOffloadingTracker(dyn dynamic.Interface, clusterID, homeID string, resync time.Duration) *offloadingTracker {
	return &offloadingTracker{dyn: dyn, clusterID: clusterID, homeID: homeID, resync: resync,
		mapping: map[string]string{}, synced: make(chan struct{})}
}

// remote returns the provider namespace of home namespace ns, and whether ns is offloaded here.
func (t *offloadingTracker) remote(ns string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.mapping[ns]
	return r, ok
}

// snapshot returns a copy of the home -> remote namespace mapping.
func (t *offloadingTracker) snapshot() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string]string, len(t.mapping))
	for k, v := range t.mapping {
		out[k] = v
	}
	return out
}

// run watches the home cluster's NamespaceOffloadings and updates the mapping on every change.
func (t *offloadingTracker) run(ctx context.Context) {
	watchObjects(ctx, t.dyn, namespaceOffloadingGVR, "", "", t.resync, func(items []*unstructured.Unstructured) {
		t.update(ctx, items)
	})
}

// update replaces the mapping with the namespaces ``items`` offload here and calls the hooks for new ones.
func (t *offloadingTracker) update(ctx context.Context, items []*unstructured.Unstructured) {
	next := map[string]string{}
	for _, item := range items {
		if remote, ok := t.remoteName(item); ok {
			next[item.GetNamespace()] = remote
		}
	}
	t.mu.Lock()
	var added []string
	for ns := range next {
		if _, ok := t.mapping[ns]; !ok {
			added = append(added, ns)
		}
	}
	t.mapping = next
	hooks := append([]func(string){}, t.onNew...)
	t.mu.Unlock()
	t.once.Do(func() { close(t.synced) })
	for _, ns := range added {
		log.G(ctx).Infof("namespace %s offloaded to %s as %s", ns, t.clusterID, next[ns])
		for _, h := range hooks {
			h(ns)
		}
	}
}

func (t *offloadingTracker) remoteName(item *unstructured.Unstructured) (string, bool) {
	conds, found, _ := unstructured.NestedSlice(item.Object, "status", "remoteNamespacesConditions", t.clusterID)
	if !found {
		return "", false
	}
	ready := false
	for _, c := range conds {
		m, _ := c.(map[string]interface{})
		if m["type"] == "Ready" && m["status"] == "True" {
			ready = true
		}
	}
	if !ready {
		return "", false
	}
	name, _, _ := unstructured.NestedString(item.Object, "status", "remoteNamespaceName")
	if name == "" {
		name = item.GetNamespace() + "-" + t.homeID
	}
	return name, true
}
