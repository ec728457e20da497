package main

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// watchObjects keeps a watch (an informer) on the objects of gvr in namespace ("" for every
// namespace) that match selector, and calls onChange with all of them after the first list
// and after every change, from one goroutine, until ctx ends.
//
// Liqo's controllers watch their objects; reading them with a watch rather than a list every
// second is also what keeps a 2-core machine's API servers idle while 100 and more virtual
// kubelets run (docs/peering.md).
func watchObjects(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, namespace, selector string,
	resync time.Duration, onChange func([]*unstructured.Unstructured)) {
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, resync, namespace, func(lo *metav1.ListOptions) {
		lo.LabelSelector = selector
	})
	informer := factory.ForResource(gvr).Informer()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default: // a call is already due: it will read the latest store
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { poke() },
		UpdateFunc: func(interface{}, interface{}) { poke() },
		DeleteFunc: func(interface{}) { poke() },
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return
	}
	poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			store := informer.GetStore().List()
			items := make([]*unstructured.Unstructured, 0, len(store))
			for _, obj := range store {
				if u, ok := obj.(*unstructured.Unstructured); ok {
					items = append(items, u)
				}
			}
			onChange(items)
		}
	}
}
