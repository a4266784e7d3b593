// The table of layer kinds: one line per kind.
#include "model/activation.h"
#include "model/batch_norm.h"
#include "model/conv2d.h"
#include "model/dense.h"
#include "model/flatten.h"
#include "model/layer.h"
#include "model/pool2d.h"

namespace bnserve::model {

#define BNSERVE_LAYER_KIND(Class, type, proto_case, spec_case)                \
  LayerKind {                                                                 \
    type, v1::Layer::proto_case, v1::LayerSpec::spec_case, &Class::FromProto, \
        &Class::FromJson, &Class::FromSpec                                    \
  }

const std::vector<LayerKind>& LayerKinds() {
  static const std::vector<LayerKind>* const kinds = new std::vector<LayerKind>{
      BNSERVE_LAYER_KIND(Dense, "dense", kDense, kDense),
      BNSERVE_LAYER_KIND(BatchNorm, "batch_norm", kBatchNorm, kBatchNorm),
      BNSERVE_LAYER_KIND(ActivationLayer, "activation", kActivation,
                         kActivation),
      BNSERVE_LAYER_KIND(Conv2d, "conv2d", kConv2D, kConv2D),
      BNSERVE_LAYER_KIND(MaxPool2d, "max_pool2d", kMaxPool2D, kMaxPool2D),
      BNSERVE_LAYER_KIND(AvgPool2d, "avg_pool2d", kAvgPool2D, kAvgPool2D),
      BNSERVE_LAYER_KIND(Flatten, "flatten", kFlatten, kFlatten),
  };
  return *kinds;
}

}  // namespace bnserve::model
