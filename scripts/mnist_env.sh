# Sourced by main.sh and test.sh: points STN_JAX_MNIST_DIR at the four MNIST
# IDX files beside the repo (../shared/data/mnist) unless it is already set.
# Without it, TensorFlow Datasets downloads MNIST itself.
if [ -z "${STN_JAX_MNIST_DIR:-}" ] && [ -d ../shared/data/mnist ]; then
  export STN_JAX_MNIST_DIR=$(cd ../shared/data/mnist && pwd)
fi
