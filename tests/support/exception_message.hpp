// tests/support/exception_message.hpp: the message of the std::invalid_argument a call throws.
#pragma once

#include <stdexcept>
#include <string>

namespace lowbit_test {

// What f() throws as std::invalid_argument, or an empty string when it throws nothing.
template <class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return {};
}

}  // namespace lowbit_test
