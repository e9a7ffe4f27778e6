"""Generation and likelihoods: samplers fitted to the codes, flows, colour images in bits per dimension."""
