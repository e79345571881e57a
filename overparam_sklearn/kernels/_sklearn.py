NNGPKernel = NTKKernel = None
