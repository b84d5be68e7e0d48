package v1alpha1

// The deep-copy methods (zz_generated.deepcopy.go) and the CRD manifests
// come from the types' markers; `make check-generate` fails when they are
// stale.
//go:generate go tool controller-gen object paths=. crd:crdVersions=v1 output:crd:dir=../../../../../deploy/kubernetes/crds
