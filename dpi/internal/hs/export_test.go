package hs

import "reflect"

func reflectValueOf(v any) reflect.Value { return reflect.ValueOf(&v) }
