// SecondsSince: the wall-clock seconds elapsed since a steady-clock time point, the unit every
// timing in an experiment record (calibration, training, latency) is written in.
#ifndef QLAB_CORE_ELAPSED_H_
#define QLAB_CORE_ELAPSED_H_

#include <chrono>

namespace qlab {

inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace qlab

#endif  // QLAB_CORE_ELAPSED_H_
