// The browser test's stand-in for `import ... from "react"`: React 18's UMD build sets
// window.React; an import map points "react" here, so react.js runs without a bundler.
const React = window.React;
export default React;
export const { useCallback, useEffect, useRef, useState, createElement } = React;
